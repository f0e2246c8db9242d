"""Row readers shared by importers: CSV/TSV (optionally gzipped) and Parquet, with line numbers."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import DataError, Problems


def read_text(path: Path) -> str:
    """Whole file as UTF-8 text (``.gz`` transparently); errors name the line of a bad byte."""
    if not path.exists():
        raise DataError("file not found", file=str(path))
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"not a valid gzip file ({exc})", file=str(path)) from exc
    return decode_utf8(raw, str(path))


def decode_utf8(raw: bytes, display: str) -> str:
    """UTF-8 (a leading BOM is dropped); a bad byte is reported with its line and offset in ``raw``."""
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        pos = exc.start + bom
        line = raw[:pos].count(b"\n") + 1
        raise DataError(
            f"not UTF-8 text (byte {pos})", file=display, line=line, fix="Re-encode the file as UTF-8."
        ) from exc
    if not text.strip():
        raise DataError("empty file", file=display, fix="Expected a header row and data rows.")
    return text


#: Field separators a header joined into one column is recognised by, with how messages name them.
SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe", "=": "equals-sign", ",": "comma", ":": "colon"}


def _joined_delimiter(header: list[str], used: str | None) -> str | None:
    """The separator a one-column header is most split by (``None`` when it is not such a header)."""
    if len(header) != 1:
        return None
    counts = {d: header[0].count(d) for d in SEPARATORS if d != used}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else None


def parse_delimiter(delimiter: str | None) -> str | None:
    """A field separator as given (``";"``, ``"tab"`` or ``"\\t"`` for a tab); one character, or an error."""
    if delimiter is None:
        return None
    value = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
    if len(value) != 1:
        raise DataError(f"the delimiter must be one character (or 'tab'), got {delimiter!r}", field="delimiter")
    return value


def csv_rows(
    path: Path, required: list[str], problems: Problems, delimiter: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for each data row; checks the header has ``required`` columns and each row its width."""
    text = read_text(path)
    if delimiter is None:
        delimiter = "\t" if path.name.removesuffix(".gz").endswith((".tsv", ".tab")) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise DataError(f"malformed header ({exc})", file=str(path), line=1) from exc
    missing = [c for c in required if c not in header]
    if missing:
        joined = _joined_delimiter(header, delimiter)
        raise DataError(
            f"missing column(s) {', '.join(missing)}; the header has {', '.join(header)}"
            + (f", one column that looks {SEPARATORS[joined]}-separated" if joined else ""),
            file=str(path),
            line=1,
            field=missing[0],
            fix=f"Pass --delimiter {joined!r} (delimiter={joined!r} in Python)."
            if joined
            else "Rename the column or map it with the importer's column options.",
        )
    dupes = {h for h in header if header.count(h) > 1}
    if dupes:
        raise DataError(f"duplicate column name(s) {', '.join(sorted(dupes))}", file=str(path), line=1)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.report(DataError(f"malformed CSV ({exc})", file=str(path), line=reader.line_num), "malformed row")
            continue
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.report(
                DataError(f"expected {len(header)} fields, got {len(cells)}", file=str(path), line=reader.line_num),
                "malformed row",
            )
            continue
        yield reader.line_num, dict(zip(header, cells))


MISSING = {"", "na", "n/a", "null", "none"}  # spellings of a missing value (R writes NA)


def parse_float(value, *, file: str, line: int, field: str, problems: Problems, kind: str = "bad number"):
    """``float(value)``; ``None`` for empty or NA cells; ``False`` (after reporting) when not a number."""
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        problems.report(DataError(f"expected a number, got {value!r}", file=file, line=line, field=field), kind)
        return False
    if out != out or out in (float("inf"), float("-inf")):
        problems.report(DataError(f"expected a finite number, got {value!r}", file=file, line=line, field=field), kind)
        return False
    return out
