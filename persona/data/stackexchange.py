"""A Stack Exchange data-dump folder (``Users.xml``, ``Posts.xml``, ``Comments.xml``, ``Tags.xml``).

Users become :class:`User` records with their *AboutMe* text (HTML stripped; display names and
locations are not imported). Questions and tags become items. Interactions: ``ask`` and ``answer``
(user -> question, value = post score), ``comment`` (user -> question), and ``tag`` (user -> tag, value
= how many of the user's questions and answers carry the tag).
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from workbench.dataset import DatasetBundle, StagedDataset
from workbench.errors import DataError, Problems
from workbench.records import Interaction, Item, User

LICENCE = "CC BY-SA 4.0 (Stack Exchange Inc. and the site's contributors)"
_TAG_RE = re.compile(r"<[^>]+>")
_WS_RE = re.compile(r"\s+")


def strip_html(text: str | None, limit: int = 2000) -> str:
    """Plain text from a post body: tags removed, entities decoded, whitespace collapsed."""
    if not text:
        return ""
    return _WS_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", text))).strip()[:limit]


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``<row .../>`` elements of a dump file with their line numbers."""
    if path.stat().st_size == 0:
        raise DataError("empty file", file=str(path), fix="Expected a Stack Exchange dump XML file.")
    parser = ET.XMLPullParser(events=("start", "end"))
    root = None
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"not UTF-8 text (byte {exc.start} of the line)",
                        file=str(path),
                        line=lineno,
                        fix="Re-encode the file as UTF-8.",
                    ) from exc
                parser.feed(raw)
                for event, elem in parser.read_events():
                    if root is None:
                        root = elem
                    elif event == "end" and elem.tag == "row":
                        yield lineno, dict(elem.attrib)
                        root.clear()  # keep memory flat on large dumps
            parser.close()
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise DataError(
            f"malformed XML ({exc.msg if hasattr(exc, 'msg') else exc})",
            file=str(path),
            line=line,
            fix="Check the file is a complete Stack Exchange dump.",
        ) from exc


def _timestamp(value: str | None, path: Path, line: int, problems: Problems) -> float | None | bool:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    except ValueError:
        problems.report(
            DataError(f"expected an ISO date, got {value!r}", file=str(path), line=line, field="CreationDate"),
            "bad date",
        )
        return False


def _required(row: dict[str, str], fields: list[str], path: Path, line: int, problems: Problems) -> bool:
    for f in fields:
        if not row.get(f):
            problems.report(
                DataError("missing required attribute", file=str(path), line=line, field=f), "missing field"
            )
            return False
    return True


def _int(row: dict[str, str], field: str, path: Path, line: int, problems: Problems, default: int | None = 0):
    value = row.get(field)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        problems.report(
            DataError(f"expected an integer, got {value!r}", file=str(path), line=line, field=field), "bad number"
        )
        return False


def load_stackexchange(
    path: str | os.PathLike, *, name: str | None = None, lenient: bool = False, engine: str = "auto"
) -> DatasetBundle | StagedDataset:
    """Read a dump folder into a :class:`DatasetBundle` (or, staged in DuckDB, a :class:`StagedDataset`).

    Args:
        path: Folder holding at least ``Users.xml`` and ``Posts.xml`` (``Comments.xml`` optional).
        name: Dataset id (default: the folder name).
        lenient: Skip and count malformed rows instead of failing on the first.
        engine: ``"auto"``: each file's rows are checked as the XML streams by and appended to a staging
            database in chunks, then joined in SQL (:func:`workbench.store.ingest.stackexchange.stage_stackexchange`),
            so memory stays flat whatever the dump's size; a bad row hands the dump to the record reader, which
            reports it (file, line, field) or, under ``lenient``, skips and counts. ``"records"``: the record reader.
    """
    if engine not in ("auto", "records"):
        raise ValueError(f"engine must be 'auto' or 'records', got {engine!r}")
    # 1. The folder holds the files a dump needs
    folder = Path(path)
    if not folder.is_dir():
        raise DataError("not a folder", file=str(folder), field="path", fix="Pass the unpacked dump folder.")
    for required in ("Users.xml", "Posts.xml"):
        if not (folder / required).exists():
            raise DataError(
                "file not found", file=str(folder / required), fix="A dump folder holds Users.xml and Posts.xml."
            )
    meta = {
        "demographics": [],
        "like_threshold": None,
        "dislike_threshold": None,
        "licence": LICENCE,
        "item_noun": "questions and tags",
    }
    if engine == "auto":
        staged = _staged(folder)
        if staged is not None:
            staging, counts = staged
            meta["n_users_without_activity"] = counts.pop("users_without_activity")
            return StagedDataset(
                name or folder.name, "stackexchange", staging, counts, meta, {"path": str(folder)}, Problems(lenient)
            )
    problems = Problems(lenient)
    # 2. Users, questions with their asks and answers, then comments on either
    users = _read_users(folder / "Users.xml", problems)
    posts = _read_posts(folder / "Posts.xml", users, problems)
    if (folder / "Comments.xml").exists():
        posts.interactions += _read_comments(folder / "Comments.xml", users, posts.post_question, problems)
    # 3. Tags as items, each user's use of a tag as one interaction
    all_tags = sorted({t for q in posts.questions.values() for t in q.tags})
    items = list(posts.questions.values()) + [
        Item(f"t:{t}", "tag", t, f"Stack Exchange tag: {t}", None, (t,)) for t in all_tags
    ]
    inters = posts.interactions
    for (uid, tag), stamps in sorted(posts.tag_use.items()):
        inters.append(Interaction(uid, f"t:{tag}", "tag", float(len(stamps)), max(stamps)))
    active = {x.user_id for x in inters}
    return DatasetBundle(
        name or folder.name,
        "stackexchange",
        [u for u in users.values() if u.user_id in active],
        items,
        inters,
        meta={**meta, "n_users_without_activity": len(users) - len(active)},
        params={"path": str(folder)},
        problems=problems,
    )


def _user_rows(upath: Path, problems: Problems):
    """``(line, user id, reputation, AboutMe as plain text)`` of each readable row of ``Users.xml`` (the others
    reported to ``problems``)."""
    for line, row in _rows(upath):
        if not _required(row, ["Id"], upath, line, problems):
            continue
        rep = _int(row, "Reputation", upath, line, problems)
        if rep is not False:
            yield line, row["Id"], rep, strip_html(row.get("AboutMe"))


def _dated_rows(path: Path, required: list[str], problems: Problems):
    """``(line, row, timestamp, score)`` of each row of a posts or comments file with its ``required`` attributes,
    a readable date and score (the others reported to ``problems``)."""
    for line, row in _rows(path):
        if not _required(row, required, path, line, problems):
            continue
        ts = _timestamp(row.get("CreationDate"), path, line, problems)
        score = _int(row, "Score", path, line, problems)
        if ts is not False and score is not False:
            yield line, row, ts, score


def _read_users(upath: Path, problems: Problems) -> dict[str, User]:
    """``{user_id: User}`` of ``Users.xml``: reputation as the one attribute, the *AboutMe* text as plain text."""
    users: dict[str, User] = {}
    for line, uid, rep, text in _user_rows(upath, problems):
        if uid in users:
            problems.report(
                DataError(f"duplicate user id {uid!r}", file=str(upath), line=line, field="Id"), "duplicate id"
            )
            continue
        users[uid] = User(uid, {"reputation": rep}, text)
    return users


@dataclass
class _Posts:
    """What ``Posts.xml`` yields: the questions (as items), the question each post belongs to, the ``ask`` and
    ``answer`` interactions, and the times each user used each tag."""

    questions: dict[str, Item] = field(default_factory=dict)
    post_question: dict[str, str] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)
    tag_use: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))


def _read_posts(ppath: Path, users: dict[str, User], problems: Problems) -> _Posts:
    """Questions and answers of ``Posts.xml``; answers are attached once every question is known (an answer
    to a missing question is dropped)."""
    out = _Posts()
    pending_answers = []
    for line, row, ts, score in _dated_rows(ppath, ["Id", "PostTypeId"], problems):
        pid, ptype, owner = row["Id"], row["PostTypeId"], row.get("OwnerUserId")
        if ptype == "1":
            tags = tuple(t for t in re.split(r"[<>|]", row.get("Tags", "")) if t)
            title = row.get("Title", "").strip()
            body = strip_html(row.get("Body"), 1000)
            if pid in out.questions:
                problems.report(
                    DataError(f"duplicate post id {pid!r}", file=str(ppath), line=line, field="Id"), "duplicate id"
                )
                continue
            out.questions[pid] = Item(f"q{pid}", "question", title, f"{title}. {body}".strip(), None, tags)
            out.post_question[pid] = pid
            if owner in users:
                out.interactions.append(Interaction(owner, f"q{pid}", "ask", float(score), ts, body))
                for t in tags:
                    out.tag_use[(owner, t)].append(ts or 0.0)
        elif ptype == "2":
            pending_answers.append(
                (pid, row.get("ParentId"), owner, float(score), ts, strip_html(row.get("Body"), 1000))
            )
    for pid, parent, owner, score, ts, body in pending_answers:
        if parent not in out.questions:
            continue  # answer to a deleted or missing question: nothing to attach it to
        out.post_question[pid] = parent
        if owner in users:
            out.interactions.append(Interaction(owner, f"q{parent}", "answer", score, ts, body))
            for t in out.questions[parent].tags:
                out.tag_use[(owner, t)].append(ts or 0.0)
    return out


def _read_comments(
    cpath: Path, users: dict[str, User], post_question: dict[str, str], problems: Problems
) -> list[Interaction]:
    """``comment`` interactions of ``Comments.xml``: a known user on the question of a known post."""
    out = []
    for _, row, ts, score in _dated_rows(cpath, ["Id", "PostId"], problems):
        q = post_question.get(row["PostId"])
        owner = row.get("UserId")
        if q is not None and owner in users:
            out.append(Interaction(owner, f"q{q}", "comment", float(score), ts, strip_html(row.get("Text"), 600)))
    return out


# -- the staged reading: rows checked as they stream by, appended to DuckDB in chunks, joined in SQL -------

CHUNK = 50_000


class _Refuse(Problems):
    """Problems that hand the dump to the record reader at the first bad row (it words the error, or skips
    and counts under ``--lenient``)."""

    def report(self, error: DataError, kind: str) -> None:
        from workbench.store.ingest.staging import NeedsRecords

        raise NeedsRecords(str(error))


class _Buffer:
    """Rows of one staging table, appended in chunks."""

    def __init__(self, staging, table: str, columns: list[str]):
        self.staging, self.table, self.columns = staging, table, columns
        self.rows: list[tuple] = []

    def add(self, *row) -> None:
        self.rows.append(row)
        if len(self.rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.staging.append(self.table, {c: [r[k] for r in self.rows] for k, c in enumerate(self.columns)})
            self.rows = []


def _staged(folder: Path):
    """``(staging, counts)`` of the dump streamed into a staging database and joined there, or ``None`` when a
    row is bad or an id repeats (the record reader then reads the dump)."""
    from workbench.store.ingest.stackexchange import TABLES, create_tables, stage_stackexchange
    from workbench.store.ingest.staging import attempt

    refuse = _Refuse()

    def build(staging):
        create_tables(staging)
        buffers = {t: _Buffer(staging, t, list(cols)) for t, cols in TABLES.items()}
        _stream_users(folder / "Users.xml", buffers["se_users"], refuse)
        _stream_posts(folder / "Posts.xml", buffers["se_posts"], refuse)
        if (folder / "Comments.xml").exists():
            _stream_comments(folder / "Comments.xml", buffers["se_comments"], refuse)
        for b in buffers.values():
            b.flush()
        return stage_stackexchange(staging)

    return attempt(build)


def _stream_users(upath: Path, out: _Buffer, problems: Problems) -> None:
    for line, uid, rep, text in _user_rows(upath, problems):
        out.add(line, uid, rep, text)


def _stream_posts(ppath: Path, out: _Buffer, problems: Problems) -> None:
    for line, row, ts, score in _dated_rows(ppath, ["Id", "PostTypeId"], problems):
        pid, ptype, owner = row["Id"], row["PostTypeId"], row.get("OwnerUserId")
        body = strip_html(row.get("Body"), 1000) if ptype in ("1", "2") else ""
        if ptype == "1":
            tags = [t for t in re.split(r"[<>|]", row.get("Tags", "")) if t]
            out.add(line, pid, ptype, owner, float(score), ts, row.get("Title", "").strip(), tags, body, None)
        elif ptype == "2":
            out.add(line, pid, ptype, owner, float(score), ts, None, None, body, row.get("ParentId"))


def _stream_comments(cpath: Path, out: _Buffer, problems: Problems) -> None:
    for line, row, ts, score in _dated_rows(cpath, ["Id", "PostId"], problems):
        out.add(line, row["PostId"], row.get("UserId"), float(score), ts, strip_html(row.get("Text"), 600))
