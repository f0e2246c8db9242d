"""Errors for bad input data, and the ``--lenient`` collector that skips and counts instead."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad input, located: ``file:line: field 'x': what is wrong. How to fix it.``

    Args:
        message: What is wrong, with the offending value.
        file: The input file (or dataset name).
        line: 1-based line (text files) or row number (tables).
        field: The column or attribute at fault.
        fix: What the user can do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ):
        self.message, self.file, self.line, self.field, self.fix = message, file, line, field, fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"row {self.line}: "
        what = f"field '{self.field}': " if self.field else ""
        fix = f" {self.fix}" if self.fix else ""
        return f"{where}{what}{self.message}.{fix}"


@dataclass
class Problems:
    """Raise the first :class:`DataError`, or under ``lenient`` count it by kind and carry on.

    Structural problems (missing files, missing columns, empty files) always raise: skipping them
    would silently import nothing.
    """

    lenient: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def report(self, error: DataError, kind: str) -> None:
        if not self.lenient:
            raise error
        self.counts[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(str(error))

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())


class WorkbenchError(Exception):
    """A library error that names the field at fault and the fix; ``apps/`` words it as a command.

    Args:
        message: What is wrong, with the offending value.
        field: The argument, option or key at fault (``"encoder"``, ``"metric_list[0].name"``).
        fix: What the caller can do about it.
    """

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None):
        self.message, self.field, self.fix = message, field, fix
        super().__init__(message + (f" {fix}" if fix else ""))

    def __str__(self) -> str:  # KeyError's own __str__ would quote the message
        return self.args[0] if self.args else ""


class UnknownNameError(WorkbenchError, KeyError, ValueError):
    """A name no registry holds, with the closest match and what is available.

    It is a ``KeyError`` (a lookup failed) and a ``ValueError`` (the caller passed a bad value), so code
    that caught either before the registries were one keeps working. ``field`` names the argument or key
    that held the name, for callers that word the error (the CLI names the option).

    >>> str(UnknownNameError("metric", "maen", ["mean", "median"]))
    "unknown metric 'maen'; did you mean 'mean'? available: mean, median"
    """

    def __init__(self, kind: str, name: object, available: list[str], *, field: str | None = None):
        import difflib

        self.kind, self.name, self.available = kind, name, list(available)
        close = difflib.get_close_matches(str(name), self.available, n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ";"
        super().__init__(f"unknown {kind} {name!r}{hint} available: {', '.join(self.available)}", field=field)
