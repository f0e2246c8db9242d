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

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, fix: str | None = None):
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
