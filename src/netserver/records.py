"""``Record``: typing.NamedTuple's class syntax, without importing typing at run time.

netserver never imports ``typing`` when it runs: the module costs about 3 ms
of every interpreter start (a seventh of ``import netserver``), and a server
starts its interpreter again for every HUP (the check, then the new image)
and, under INET, for every connection.  Annotations are strings (``from
__future__ import annotations``), and names needed only by them are imported
under ``TYPE_CHECKING``, which a type checker takes as true::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import Any

A record class is written as for NamedTuple, and a type checker sees exactly
that (below, ``Record`` *is* NamedTuple for it); at run time it is built by
``collections.namedtuple`` from the annotated names and their defaults::

    class Identity(Record):
        uid: int
        gid: int
        name: str = ""

        def is_current(self) -> bool: ...
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    class _RecordType(type):
        def __new__(mcls, name: str, bases: tuple, namespace: dict):
            if not bases:
                return super().__new__(mcls, name, bases, namespace)  # Record itself
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field not in namespace for field in fields[len(fields) - len(defaults):]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = collections.namedtuple(name, fields, defaults=defaults, module=namespace.get("__module__"))
            for key, value in namespace.items():
                if key not in fields and key != "__module__":  # namedtuple was given the module
                    setattr(cls, key, value)
            return cls

    class Record(metaclass=_RecordType):
        """Base of the package's record classes (see the module's docstring)."""


__all__ = ["Record"]
