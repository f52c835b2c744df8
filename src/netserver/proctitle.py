"""setproctitle's one function, loaded so that it costs the children nothing.

The setproctitle package's ``__init__`` imports ``logging``, and ``logging``
imports ``threading``, whose at-fork hook then runs in every child: about
350 KiB of private memory a child (see the README's logging note) and, here,
0.35-0.4 ms more per respawn (``benchmarks/respawn_paired.py``, 40 kills).
So the C extension is loaded from the package's folder without running the
package.  A layout without that extension gives no titles, never an error.
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
    import importlib.machinery
    import importlib.util

    try:
        spec = importlib.util.find_spec("setproctitle")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_setproctitle" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("setproctitle._setproctitle", path)
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
                loader.exec_module(module)
                return module.setproctitle
    return None
