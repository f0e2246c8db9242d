"""The user's own logs: CSV/TSV, Parquet, or a Hugging Face ``datasets`` dataset, via a column mapping.

The mapping names which column holds what (defaults in brackets):

===================  ===========================================================================
``user``             user id [``user_id``] (required)
``item``             item id [``item_id``] (required)
``value``            rating / engagement strength (number) [none]
``timestamp``        seconds since the epoch, or an ISO date [none]
``kind``             interaction type [none: every row is ``default_kind``]
``default_kind``     the kind of rows without one, e.g. ``tag`` for a file of tags [``interaction``]
``text``             text the user wrote with the interaction [none]
``item_title``       item title [none: the item id]
``item_text``        item description used by text encoders [none: the title]
``item_tags``        ``|``-separated categories (genres, tags) [none]
``item_image``       image path or URI [none]
``user_attributes``  columns holding demographics, e.g. ``age,gender`` [none]
===================  ===========================================================================

Item and user columns may sit in the interactions table itself (repeated per row; conflicting values
are an error) or in separate ``items`` / ``users`` files keyed by the same id columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.dataset import DatasetBundle, StagedDataset
from workbench.errors import DataError, Problems
from workbench.records import Interaction, Item, User
from workbench.store.files import parquet_rows
from workbench.tabular import csv_rows, parse_delimiter, parse_float


@dataclass
class ColumnMapping:
    """Which column holds what; see the module docstring."""

    user: str = "user_id"
    item: str = "item_id"
    value: str | None = None
    timestamp: str | None = None
    kind: str | None = None
    text: str | None = None
    item_title: str | None = None
    item_text: str | None = None
    item_tags: str | None = None
    item_image: str | None = None
    user_attributes: list[str] = field(default_factory=list)
    tags_separator: str = "|"
    default_kind: str = "interaction"

    def __post_init__(self):
        if isinstance(self.user_attributes, str):
            self.user_attributes = [c.strip() for c in self.user_attributes.split(",") if c.strip()]
        for name in ("user", "item"):
            if not getattr(self, name):
                raise ValueError(f"ColumnMapping.{name} must name a column, got {getattr(self, name)!r}")
        if not isinstance(self.default_kind, str) or not self.default_kind.strip():
            raise ValueError(f"ColumnMapping.default_kind must be a kind such as 'tag', got {self.default_kind!r}")

    def interaction_columns(self) -> list[str]:
        return [self.user, self.item] + [c for c in (self.value, self.timestamp, self.kind, self.text) if c]

    def item_columns(self) -> list[str]:
        return [c for c in (self.item_title, self.item_text, self.item_tags, self.item_image) if c]


def _source_rows(
    source: str | os.PathLike,
    required: list[str],
    problems: Problems,
    split: str = "train",
    delimiter: str | None = None,
) -> tuple[str, Iterator[tuple[int, dict[str, Any]]]]:
    """Display name and ``(row, dict)`` pairs from a CSV/TSV/Parquet file or a ``datasets`` dataset."""
    text = str(source)
    path = Path(text)
    if text.startswith("hf:") or (
        path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
    ):
        return text, _hf_rows(text, required, split)
    if not path.exists():
        raise DataError(
            "file not found", file=text, fix="Pass a .csv, .tsv, .parquet file, a saved datasets folder or hf:NAME."
        )
    suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
    if suffix in ("csv", "tsv", "tab", "txt"):
        return text, csv_rows(path, required, problems, delimiter)
    if suffix in ("parquet", "pq"):
        return text, parquet_rows(path, required)
    raise DataError(
        f"unsupported file type '.{suffix}'",
        file=text,
        field="path",
        fix="Use .csv, .tsv, .parquet, a folder saved with datasets' save_to_disk, or hf:NAME.",
    )


def _hf_dataset(source: str, split: str):
    """A ``datasets`` dataset: ``hf:NAME`` loaded, or a saved folder (its ``split`` when it holds several)."""
    try:
        import datasets
    except ImportError as exc:  # optional extra
        raise DataError(
            "the `datasets` package is not installed", file=source, fix="pip install 'persona-workbench[hf]'."
        ) from exc
    if source.startswith("hf:"):
        return datasets.load_dataset(source[3:], split=split)
    ds = datasets.load_from_disk(source)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"no split {split!r}; the dataset has {', '.join(ds)}", file=source, field="split")
        ds = ds[split]
    return ds


def _hf_rows(source: str, required: list[str], split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    ds = _hf_dataset(source, split)
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; the dataset has {', '.join(ds.column_names)}",
            file=source,
            field=missing[0],
            fix="Rename the column or map it with the column options.",
        )
    yield from enumerate(ds, start=1)


def _timestamp(value: Any, *, file: str, line: int, field: str, problems: Problems):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or UTC).timestamp()
    try:
        out = float(value)
    except (TypeError, ValueError):
        pass
    else:
        if math.isfinite(out):
            return out
        problems.report(
            DataError(f"expected a finite timestamp, got {value!r}", file=file, line=line, field=field), "bad timestamp"
        )
        return False
    try:
        dt = datetime.fromisoformat(str(value).strip())
        return dt.replace(tzinfo=dt.tzinfo or UTC).timestamp()
    except ValueError:
        problems.report(
            DataError(
                f"expected seconds since the epoch or an ISO date, got {value!r}", file=file, line=line, field=field
            ),
            "bad timestamp",
        )
        return False


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


class _Records:
    """The users and items of an import, from their own files or repeated on the interaction rows; a row that
    contradicts an earlier one is reported (and skipped) through ``problems``."""

    def __init__(self, mapping: ColumnMapping, problems: Problems, delimiter: str | None = None):
        self.m, self.problems, self.delimiter = mapping, problems, delimiter
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}

    def add_item(self, row: dict[str, Any], file: str, line: int) -> bool:
        m = self.m
        iid = _cell(row.get(m.item))
        title = _cell(row.get(m.item_title)) if m.item_title else ""
        tags = (
            tuple(t.strip() for t in _cell(row.get(m.item_tags)).split(m.tags_separator) if t.strip())
            if m.item_tags
            else ()
        )
        text = _cell(row.get(m.item_text)) if m.item_text else ""
        image = _cell(row.get(m.item_image)) or None if m.item_image else None
        new = Item(iid, "item", title or iid, text or title or iid, image, tags)
        old = self.items.get(iid)
        if old is not None and old != new:
            self.problems.report(
                DataError(
                    f"item {iid!r} has conflicting values across rows",
                    file=file,
                    line=line,
                    field=m.item,
                    fix="Give each item one title/text/tags/image.",
                ),
                "conflict",
            )
            return False
        self.items[iid] = new
        return True

    def add_user(self, row: dict[str, Any], file: str, line: int) -> bool:
        m = self.m
        uid = _cell(row.get(m.user))
        attrs = {c: row.get(c) if not isinstance(row.get(c), str) else row.get(c).strip() for c in m.user_attributes}
        old = self.users.get(uid)
        if old is not None and old.attributes != attrs:
            self.problems.report(
                DataError(
                    f"user {uid!r} has conflicting attributes across rows",
                    file=file,
                    line=line,
                    field=m.user,
                    fix="Give each user one value per attribute column.",
                ),
                "conflict",
            )
            return False
        self.users[uid] = User(uid, attrs)
        return True

    def read_file(self, what: str, source: str | os.PathLike, split: str) -> None:
        """Read the ``users`` or ``items`` file (one row per id; a repeated id is an error)."""
        column = self.m.user if what == "user" else self.m.item
        required = [column, *(self.m.user_attributes if what == "user" else self.m.item_columns())]
        records, add = (self.users, self.add_user) if what == "user" else (self.items, self.add_item)
        file, rows = _source_rows(source, required, self.problems, split, self.delimiter)
        for line, row, _ in record_rows(file, rows, what, column, self.problems, records):
            add(row, file, line)

    def known(self, what: str, key: str, file: str, line: int) -> bool:
        """Whether ``key`` is in the ``users`` / ``items`` file read before (else reported)."""
        if key in (self.users if what == "user" else self.items):
            return True
        column = self.m.user if what == "user" else self.m.item
        self.problems.report(
            DataError(f"unknown {what} {key!r} (not in the {what}s file)", file=file, line=line, field=column),
            f"unknown {what}",
        )
        return False


def load_table(
    interactions: str | os.PathLike,
    mapping: ColumnMapping | None = None,
    *,
    users: str | os.PathLike | None = None,
    items: str | os.PathLike | None = None,
    name: str | None = None,
    lenient: bool = False,
    split: str = "train",
    like_threshold: float | None = None,
    dislike_threshold: float | None = None,
    delimiter: str | None = None,
    engine: str = "auto",
) -> DatasetBundle | StagedDataset:
    """Import the user's own logs.

    Args:
        interactions: CSV/TSV/Parquet file, a folder saved by ``datasets``' ``save_to_disk``, or ``hf:NAME``.
        mapping: Column mapping (default: ``user_id`` and ``item_id`` only).
        users: Optional file with one row per user (``mapping.user`` plus ``mapping.user_attributes``).
        items: Optional file with one row per item (``mapping.item`` plus the item columns).
        name: Dataset id (default: the file's stem).
        lenient: Skip and count malformed rows instead of failing on the first.
        split: Split to read from a ``datasets`` dataset.
        like_threshold / dislike_threshold: ``value`` at or above which a hidden interaction counts as
            liked (at or below: disliked). Default: every interaction is a like (engagement data).
        delimiter: Field separator of CSV/TSV files (default: tab for .tsv, comma otherwise); a file whose
            header reads as one joined column is refused with the separator to pass.
        engine: ``"auto"`` reads the files with DuckDB into a staging database and checks them in SQL (a
            :class:`~workbench.dataset.StagedDataset`, no Python object per row); input it cannot vouch for
            (a bad row, a value SQL might read otherwise) goes to the record reader, which reports the first
            bad row's file, line and field, or skips and counts under ``lenient``. ``"records"``: the record
            reader alone (a :class:`~workbench.dataset.DatasetBundle`; the ingest benchmark's baseline).
    """
    # 1. The staged reading, when it vouches for every row
    if engine not in ("auto", "records"):
        raise ValueError(f"engine must be 'auto' or 'records', got {engine!r}")
    m = mapping or ColumnMapping()
    default_name = Path(str(interactions).removeprefix("hf:")).name.split(".")[0] or "table"
    meta = {
        "demographics": list(m.user_attributes),
        "like_threshold": like_threshold,
        "dislike_threshold": dislike_threshold,
        "licence": "as supplied by the user",
        "item_noun": "items",
    }
    params = {
        "interactions": str(interactions),
        "users": str(users) if users else None,
        "items": str(items) if items else None,
        "mapping": asdict(m),
        "split": split,
        "fingerprint": table_fingerprint(
            interactions,
            m,
            users=users,
            items=items,
            split=split,
            like_threshold=like_threshold,
            dislike_threshold=dislike_threshold,
            delimiter=delimiter,
        ),
    }
    sep = parse_delimiter(delimiter)
    if engine == "auto":
        staged = _staged(interactions, m, users, items, split, sep)
        if staged is not None:
            staging, counts = staged
            return StagedDataset(name or default_name, "table", staging, counts, meta, params, Problems(lenient))
    # 2. Users and items from their own files, when given
    problems = Problems(lenient)
    rec = _Records(m, problems, sep)
    if users is not None:
        rec.read_file("user", users, split)
    if items is not None:
        rec.read_file("item", items, split)
    # 3. The interactions (with the user and item columns on each row when those have no file)
    inters = _read_interactions(interactions, rec, split, users_file=users is not None, items_file=items is not None)
    # 4. The bundle
    return DatasetBundle(
        name or default_name,
        "table",
        list(rec.users.values()),
        list(rec.items.values()),
        inters,
        meta=meta,
        params=params,
        problems=problems,
    )


def _staged(interactions, m: ColumnMapping, users, items, split: str, delimiter: str | None):
    """``(staging, counts)`` of the files read, checked and shaped by DuckDB
    (:func:`workbench.store.ingest.table.stage_table`), or ``None`` when it cannot vouch for them (the record
    reader then decides, and words any error as it always has)."""
    from workbench.store.ingest.staging import attempt
    from workbench.store.ingest.table import stage_table

    required = {
        "inter": m.interaction_columns()
        + ([] if users is not None else m.user_attributes)
        + ([] if items is not None else m.item_columns()),
        "users": [m.user, *m.user_attributes],
        "items": [m.item, *m.item_columns()],
    }

    def build(staging):
        sources = {
            role: _source(staging, role, source, required[role], split, delimiter)
            for role, source in (("inter", interactions), ("users", users), ("items", items))
            if source is not None
        }
        return stage_table(staging, m, sources)

    return attempt(build)


def _source(staging, role: str, source, required: list[str], split: str, delimiter: str | None) -> str:
    """One file (or ``datasets`` dataset) as a FROM clause of ``staging``; raises ``NeedsRecords`` when a
    required column is missing or the file is not one DuckDB reads as the record reader would."""
    from workbench.store.ingest.staging import NeedsRecords

    text = str(source)
    path = Path(text)
    if text.startswith("hf:") or (
        path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
    ):
        out = staging.arrow_source(f"hf_{role}", _hf_arrow(text, split))
    elif not path.is_file():
        raise NeedsRecords(f"{text} is not a file")
    else:
        suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower()
        if suffix in ("csv", "tsv", "tab", "txt"):
            sep = delimiter or ("\t" if suffix in ("tsv", "tab") else ",")
            columns = csv_header(path, sep)
            if len(set(columns)) != len(columns) or not all(columns):
                raise NeedsRecords(f"{text}: a repeated or empty column name")
            out = staging.csv_source(path, columns, sep)
        elif suffix in ("parquet", "pq"):
            out = staging.parquet_source(path)
        else:
            raise NeedsRecords(f"{text}: not a table file")
    if any(c not in staging.types(out) for c in required):
        raise NeedsRecords(f"{text}: a required column is missing")
    return out


def csv_header(path: Path, delimiter: str) -> list[str]:
    """The column names of a CSV/TSV file's first line (stripped), read without reading the whole file;
    ``NeedsRecords`` when the start of the file is not plain UTF-8 with a complete header line."""
    import csv
    import gzip
    import io

    from workbench.store.ingest.staging import NeedsRecords

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
        text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise NeedsRecords(f"{path}: {exc}") from exc
    if "\n" not in text:
        raise NeedsRecords(f"{path}: no complete header line in the first 64 KiB")
    try:
        header = next(csv.reader(io.StringIO(text.split("\n", 1)[0] + "\n", newline=""), delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise NeedsRecords(f"{path}: {exc}") from exc
    return [h.strip() for h in header]


def _hf_arrow(source: str, split: str):
    """The Arrow table of a ``datasets`` dataset (``hf:NAME`` or a saved folder), in row order."""
    from workbench.store.ingest.staging import NeedsRecords

    try:
        return _hf_dataset(source, split).flatten_indices().data.table
    except DataError as exc:  # no datasets package, no such split: the record reader says so
        raise NeedsRecords(str(exc)) from exc


def table_fingerprint(
    interactions: str | os.PathLike,
    mapping: ColumnMapping,
    *,
    users: str | os.PathLike | None = None,
    items: str | os.PathLike | None = None,
    split: str = "train",
    like_threshold: float | None = None,
    dislike_threshold: float | None = None,
    delimiter: str | None = None,
) -> str:
    """A hash of what :func:`load_table` imports: the files' bytes (every file of a saved ``datasets`` folder;
    the name of an ``hf:`` dataset), the column mapping and the settings. Stored in the dataset's params, so a
    task naming the same files and mapping (``dataset: {source: table, ...}``) knows it is already imported."""
    import hashlib
    import json

    h = hashlib.sha256()
    thresholds = [None if t is None else float(t) for t in (like_threshold, dislike_threshold)]  # 4 and 4.0 alike
    settings = [asdict(mapping), split, *thresholds, parse_delimiter(delimiter)]
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for role, source in (("interactions", interactions), ("users", users), ("items", items)):
        h.update(f"\0{role}\0".encode())
        if source is None:
            continue
        path = Path(str(source))
        if str(source).startswith("hf:") or not path.exists():
            h.update(str(source).encode())
            continue
        for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            h.update(f"\0{f.relative_to(path) if path.is_dir() else ''}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def _read_interactions(
    source: str | os.PathLike, rec: _Records, split: str, *, users_file: bool, items_file: bool
) -> list[Interaction]:
    """The interaction rows of ``source``; a row with an empty id, a bad value or time, or an unknown or
    conflicting user or item is reported through ``rec.problems`` and skipped."""
    m, problems = rec.m, rec.problems
    required = m.interaction_columns()
    if not users_file:
        required += m.user_attributes
    if not items_file:
        required += m.item_columns()
    file, rows = _source_rows(source, required, problems, split, rec.delimiter)
    inters: list[Interaction] = []
    for line, row, x in interaction_rows(file, rows, m, problems):
        if not (rec.known("user", x.user_id, file, line) if users_file else rec.add_user(row, file, line)):
            continue
        if not (rec.known("item", x.item_id, file, line) if items_file else rec.add_item(row, file, line)):
            continue
        inters.append(x)
    return inters


def record_rows(file: str, rows, what: str, column: str, problems: Problems, seen=None):
    """``(line, row, id)`` for each row of a ``users`` / ``items`` file: an empty id is reported to ``problems``
    and left out, an id seen before (in the file, or in ``seen`` when given) is an error naming its line."""
    listed: set[str] = set()
    for line, row in rows:
        key = _cell(row.get(column))
        if not key:
            problems.report(DataError(f"empty {what} id", file=file, line=line, field=column), "missing field")
        elif key in listed or (seen is not None and key in seen):
            raise DataError(
                f"duplicate {what} id {key!r}",
                file=file,
                line=line,
                field=column,
                fix=f"{'An' if what == 'item' else 'A'} {what}s file has one row per {what}.",
            )
        else:
            listed.add(key)
            yield line, row, key


def interaction_rows(file: str, rows, m: ColumnMapping, problems: Problems):
    """``(line, row, Interaction)`` for each row of an interactions table whose ids, value and timestamp read;
    the others are reported to ``problems`` (naming file, line and column) and left out."""
    for line, row in rows:
        uid, iid = _cell(row.get(m.user)), _cell(row.get(m.item))
        if not uid or not iid:
            problems.report(
                DataError("empty id", file=file, line=line, field=m.user if not uid else m.item), "missing field"
            )
            continue
        value = (
            parse_float(row.get(m.value), file=file, line=line, field=m.value, problems=problems) if m.value else None
        )
        ts = (
            _timestamp(row.get(m.timestamp), file=file, line=line, field=m.timestamp, problems=problems)
            if m.timestamp
            else None
        )
        if value is False or ts is False:
            continue
        kind = (_cell(row.get(m.kind)) if m.kind else "") or m.default_kind
        yield line, row, Interaction(uid, iid, kind, value, ts, _cell(row.get(m.text)) if m.text else "")
