"""Face-rating data in the Face Research Lab London Set layout.

Folder layout: ``ratings.csv`` or ``ratings.csv.gz`` (``rating, rater_id, face_id, rater_sex, rater_age``;
1-7 ratings), ``faces.csv`` (``face_id, face_age, face_gender, face_eth``) and ``images/NNN_03.jpg``
(face id ``I001`` is ``001_03.jpg``). Raters become users with ``sex`` and ``age``; faces become image
items. Ratings of real people's faces are sensitive: use them for preference and bias mechanics only,
never to rank people.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.dataset import DatasetBundle, StagedDataset
from workbench.errors import DataError, Problems
from workbench.records import Interaction, Item, User
from workbench.tabular import csv_rows, parse_float

LICENCE = "CC BY 4.0: DeBruine & Jones (2017), Face Research Lab London Set; ratings from the faux R package"


def _image_path(folder: Path, face_id: str) -> Path:
    return folder / "images" / f"{face_id.lstrip('I')}_03.jpg"


def load_faces(
    path: str | os.PathLike, *, name: str | None = None, lenient: bool = False, engine: str = "auto"
) -> DatasetBundle | StagedDataset:
    """Read a face-rating folder into a :class:`DatasetBundle` (or, read by DuckDB, a :class:`StagedDataset`).

    Args:
        path: The folder (see the module docstring for its layout).
        name: Dataset id (default: the folder name).
        lenient: Skip and count malformed rows instead of failing on the first.
        engine: ``"auto"``: the ratings are read and checked by DuckDB
            (:func:`workbench.store.ingest.faces.stage_faces`), and the record reader below reports any bad row
            (file, line, field) or, under ``lenient``, skips and counts them; ``"records"``: the record reader
            alone.
    """
    if engine not in ("auto", "records"):
        raise ValueError(f"engine must be 'auto' or 'records', got {engine!r}")
    # 1. the folder and its two files
    folder = Path(path)
    if not folder.is_dir():
        raise DataError("not a folder", file=str(folder), field="path")
    problems = Problems(lenient)
    faces_file = folder / "faces.csv"
    ratings_file = next((folder / n for n in ("ratings.csv.gz", "ratings.csv") if (folder / n).exists()), None)
    if ratings_file is None:
        raise DataError(
            "file not found", file=str(folder / "ratings.csv.gz"), fix="Expected ratings.csv or ratings.csv.gz."
        )

    # 2. the faces, as items with their attributes
    items: dict[str, Item] = {}
    for line, row in csv_rows(faces_file, ["face_id", "face_age", "face_gender", "face_eth"], problems):
        fid = "I" + row["face_id"].strip().lstrip("I")
        if fid in items:
            problems.report(
                DataError(f"duplicate face id {row['face_id']!r}", file=str(faces_file), line=line, field="face_id"),
                "duplicate id",
            )
            continue
        age = parse_float(row["face_age"], file=str(faces_file), line=line, field="face_age", problems=problems)
        if age is False:
            continue
        image = _image_path(folder, fid)
        if not image.exists():
            problems.report(
                DataError(
                    "image file not found",
                    file=str(image),
                    field="face_id",
                    fix=f"faces.csv line {line} names a face without an image.",
                ),
                "missing image",
            )
            continue
        gender, eth = row["face_gender"].strip(), row["face_eth"].strip()
        age_text = f"{age:.0f}-year-old " if age is not None else ""
        items[fid] = Item(
            fid,
            "image",
            f"face {fid}",
            f"Photo of a {age_text}{eth} {gender} face, neutral expression.",
            str(image.resolve()),
            tuple(t for t in (gender, eth) if t),
        )

    meta = {
        "demographics": ["sex", "age"],
        "like_threshold": 5.0,
        "dislike_threshold": 3.0,
        "licence": LICENCE,
        "item_noun": "faces",
        "sensitive": True,
    }
    if engine == "auto" and not problems.skipped:
        staged = _staged(ratings_file, list(items.values()))
        if staged is not None:
            return StagedDataset(name or folder.name, "faces", *staged, meta, {"path": str(folder)}, problems)

    # 3. the raters and their ratings
    users: dict[str, User] = {}
    inters: list[Interaction] = []
    seen: set[tuple[str, str]] = set()
    for line, row in csv_rows(ratings_file, ["rating", "rater_id", "face_id", "rater_sex", "rater_age"], problems):
        f = str(ratings_file)
        rating = parse_float(row["rating"], file=f, line=line, field="rating", problems=problems)
        if rating is False or rating is None:
            if rating is None:
                problems.report(DataError("missing rating", file=f, line=line, field="rating"), "missing field")
            continue
        if not 1 <= rating <= 7:
            problems.report(DataError(f"rating {rating} outside 1-7", file=f, line=line, field="rating"), "bad value")
            continue
        age = parse_float(row["rater_age"], file=f, line=line, field="rater_age", problems=problems)
        if age is False:
            continue
        rid, fid = row["rater_id"].strip(), row["face_id"].strip()
        if not rid:
            problems.report(DataError("empty rater id", file=f, line=line, field="rater_id"), "missing field")
            continue
        if fid not in items:
            problems.report(
                DataError(f"unknown face {fid!r} (not in faces.csv)", file=f, line=line, field="face_id"),
                "unknown item",
            )
            continue
        if (rid, fid) in seen:
            problems.report(
                DataError(f"rater {rid!r} rated face {fid!r} twice", file=f, line=line, field="face_id"),
                "duplicate rating",
            )
            continue
        seen.add((rid, fid))
        if rid not in users:
            users[rid] = User(rid, {"sex": row["rater_sex"].strip() or None, "age": age})
        inters.append(Interaction(rid, fid, "rating", rating, None))

    # 4. the bundle
    return DatasetBundle(
        name or folder.name,
        "faces",
        list(users.values()),
        list(items.values()),
        inters,
        meta=meta,
        params={"path": str(folder)},
        problems=problems,
    )


RATING_COLUMNS = ["rating", "rater_id", "face_id", "rater_sex", "rater_age"]


def _staged(ratings_file: Path, faces: list[Item]):
    """``(staging, counts)`` of the ratings read, checked and shaped by DuckDB beside the ``faces`` read above,
    or ``None`` when it cannot vouch for them (the record reader then decides and words any error)."""
    from persona.data.table import csv_header
    from workbench.store.ingest.faces import FACE_COLUMNS, stage_faces
    from workbench.store.ingest.staging import NeedsRecords, attempt

    def build(staging):
        header = csv_header(ratings_file, ",")
        if any(c not in header for c in RATING_COLUMNS) or len(set(header)) != len(header) or not all(header):
            raise NeedsRecords(f"{ratings_file}: the header lacks a column")
        staging.create("faces", FACE_COLUMNS)
        staging.append("faces", {c: [getattr(f, c) for f in faces] for c in FACE_COLUMNS})
        return stage_faces(staging, staging.csv_source(ratings_file, header, ","))

    return attempt(build)
