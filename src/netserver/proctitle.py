"""setproctitle's one function, loaded so that it costs the children nothing.

The setproctitle package's ``__init__`` imports ``logging``, and ``logging``
imports ``threading``, whose at-fork hook then runs in every child: about
350 KiB of private memory a child (see the README's logging note) and, here,
0.35-0.4 ms more per respawn (``benchmarks/respawn_paired.py``, 40 kills).
So the C extension is loaded from the package's folder without running the
package.  A layout without that extension gives no titles, never an error.
The supervisor titles its children by setting the title just before it forks
them: a child that wrote its own would un-share the pages that takes.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def load() -> Callable[[str], None] | None:
    """``setproctitle(title)``, or None where setproctitle is not installed."""
    loaded = sys.modules.get("setproctitle")
    if loaded is not None:
        return loaded.setproctitle  # the application imported it already: threading is there anyway
    # importlib.machinery, not importlib.util: every module the parent loads is heap the children
    # may come to write (measured with benchmarks/private_pages.py).
    import importlib.machinery

    for folder in sys.path:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder or os.curdir, "setproctitle", "_setproctitle" + suffix)
            if os.path.isfile(path):
                loader = importlib.machinery.ExtensionFileLoader("setproctitle._setproctitle", path)
                module = loader.create_module(importlib.machinery.ModuleSpec(loader.name, loader, origin=path))
                loader.exec_module(module)
                return module.setproctitle
    return None
