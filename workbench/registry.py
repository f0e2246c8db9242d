"""The one name -> implementation registry, with lazy ``"module:attr"`` targets.

Every swappable part (persona encoders, rewriter backends, generators, guidance rules and schedules,
schedulers, encoders, metrics, face embedders) is chosen by name through a :class:`Registry`. Importing a
registry imports nothing heavy; :meth:`Registry.get` imports the target on first use. An unknown name
raises :class:`~workbench.errors.UnknownNameError` with the closest match and the list of what is available.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from workbench.errors import UnknownNameError


class Registry:
    """Names of one kind of implementation, each a lazy ``"module:attr"`` target.

    Args:
        kind: What the names name, for messages (``"metric"``, ``"guidance rule"``).
        entries: ``{name: "module:attr"}``.
        aliases: Other spellings accepted for a name (``{"dlib_face": "dlib-face"}``); :meth:`names` lists
            only the canonical ones and :meth:`canonical` maps an alias to its name.
        prefixes: ``{"clip:": "module:attr"}``: names that start with the prefix resolve to that target, the
            rest of the name being the target's argument (:meth:`split`).
        normalize: Applied to a name before lookup (e.g. ``str.lower``); the default strips whitespace.

    Example:
        >>> r = Registry("metric", {"mean": "statistics:mean"})
        >>> r.get("mean")([1, 3])
        2
        >>> r.get("maen")
        Traceback (most recent call last):
        ...
        workbench.errors.UnknownNameError: unknown metric 'maen'; did you mean 'mean'? available: mean
    """

    def __init__(
        self,
        kind: str,
        entries: dict[str, str] | None = None,
        *,
        aliases: dict[str, str] | None = None,
        prefixes: dict[str, str] | None = None,
        normalize: Callable[[str], str] | None = None,
    ):
        self.kind = kind
        self._entries: dict[str, str] = {}
        self._aliases: dict[str, str] = dict(aliases or {})
        self._prefixes: dict[str, str] = {}
        self._normalize = normalize or (lambda s: s.strip())
        for name, target in (entries or {}).items():
            self.register(name, target)
        for prefix, target in (prefixes or {}).items():
            _check_target(target)
            self._prefixes[prefix] = target

    def register(self, name: str, target: str) -> None:
        """Add (or replace) ``name``; ``target`` must look like ``"module:attr"``."""
        _check_target(target)
        self._entries[name] = target

    def names(self) -> list[str]:
        """The canonical names, sorted, then each prefix as ``"<prefix><...>"``."""
        return sorted(self._entries) + [f"{p}<...>" for p in self._prefixes]

    def __iter__(self):
        return iter(sorted(self._entries))

    def targets(self) -> dict[str, str]:
        """``{name: "module:attr"}`` of the plain (not prefixed) names."""
        return dict(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            self.split(name)  # type: ignore[arg-type]
        except (UnknownNameError, TypeError, AttributeError):
            return False
        return True

    def split(self, name: str, *, field: str | None = None) -> tuple[str, str | None]:
        """``(canonical name, argument)``: the argument is what follows a prefix (``None`` for plain names)."""
        if not isinstance(name, str):
            raise UnknownNameError(self.kind, name, self.names(), field=field)
        key = self._normalize(name)
        key = self._aliases.get(key, key)
        if key in self._entries:
            return key, None
        for prefix in self._prefixes:
            if key.startswith(prefix) and len(key) > len(prefix):
                return prefix, name.strip()[len(prefix) :]
        raise UnknownNameError(self.kind, name, self.names(), field=field)

    def canonical(self, name: str, *, field: str | None = None) -> str:
        """The name as the registry spells it (an alias mapped, whitespace stripped); checks it exists."""
        key, arg = self.split(name, field=field)
        return key if arg is None else key + arg

    def get(self, name: str, *, field: str | None = None) -> Any:
        """The implementation registered under ``name`` or a prefix (``"clip:"``; its module imported now)."""
        key = name if name in self._prefixes else self.split(name, field=field)[0]
        target = self._entries.get(key) or self._prefixes[key]
        module, attr = target.split(":", 1)
        return getattr(importlib.import_module(module), attr)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _check_target(target: str) -> None:
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"target must look like 'module:attr', got {target!r}")
