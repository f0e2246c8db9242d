"""Name -> implementation registries with lazy ``"module:attr"`` targets.

Importing a registry imports nothing heavy; :meth:`Registry.get` imports the target on first use.
An unknown name answers with the closest match and the list of what is available.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class Registry:
    """A small registry of lazily imported implementations.

    Example:
        >>> r = Registry("metric", {"mean": "statistics:mean"})
        >>> r.get("mean")([1, 3])
        2
        >>> r.get("maen")
        Traceback (most recent call last):
        ...
        KeyError: "unknown metric 'maen'; did you mean 'mean'? available: mean"
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, str] = dict(entries or {})

    def register(self, name: str, target: str) -> None:
        if ":" not in target:
            raise ValueError(f"target must look like 'module:attr', got {target!r}")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise KeyError(f"unknown {self.kind} {name!r}{hint} available: {', '.join(self.names())}")
        module, attr = self._entries[name].split(":", 1)
        return getattr(importlib.import_module(module), attr)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
