"""Importers: real-data round trips, the generic table importer, malformed input and ``--lenient``.

Real data sets are read from ``../shared/data`` beside the checkout (and MovieLens-100k from the
RecBole wheel in the cache); each of those tests skips with the reason when its data is absent.
Every malformed-input case starts from a workspace that already holds a dataset and checks the
workspace is exactly as it was after the import is rejected.
"""

from __future__ import annotations

import csv
import gzip
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from persona.data.faces import load_faces
from persona.data.movielens import load_movielens
from persona.data.stackexchange import load_stackexchange
from persona.data.synthetic import generate_community
from persona.data.table import ColumnMapping, load_table
from workbench.dataset import DatasetBundle, validate_bundle
from workbench.errors import DataError
from workbench.store import Workspace
from workbench.store.datasets import load_interactions, load_items, load_users, write_dataset

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TABLES = ("datasets", "users", "items", "interactions")
EXISTING = "existing"  # the dataset every malformed-input case starts with


# -- helpers ---------------------------------------------------------------------------------------


def shared(name: str) -> Path:
    """A folder of ``../shared/data``, or skip the test saying it is absent."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent (tests read it from ../shared/data beside the checkout)")
    return folder


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def to_parquet(path: Path, select_sql: str) -> Path:
    """Write the result of ``select_sql`` to a Parquet file with DuckDB."""
    duckdb.sql(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    return path


def snapshot(ws: Workspace, dataset: str | None = None) -> dict[str, list[tuple]]:
    """Every row of the dataset tables (of one dataset when ``dataset`` is given)."""
    where, params = ("WHERE dataset_id = ?", [dataset]) if dataset else ("", [])
    return {t: ws.query(f"SELECT * FROM {t} {where} ORDER BY ALL", params) for t in TABLES}


def utc(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def by_id(records, attr: str) -> dict:
    return {getattr(r, attr): r for r in records}


@pytest.fixture
def local_tz_not_utc(monkeypatch):
    """Run with the local time zone 5 hours off UTC, so naive dates read as local time would show."""
    monkeypatch.setenv("TZ", "PWB+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def ws(tmp_path):
    """A workspace on disk that already holds a small synthetic dataset called ``existing``."""
    with Workspace(tmp_path / "ws.duckdb") as w:
        write_dataset(w, generate_community(12, 10, seed=5, name=EXISTING))
        yield w


# -- small input folders and files -----------------------------------------------------------------

ML_USER_HEADER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
ML_ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
ML_INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ML_INTER_ROWS = ["1\t1\t5\t874965758", "1\t172\t4\t874965478", "2\t1\t3\t888551199"]


def movielens_folder(folder: Path, inter_rows: list[str] = ML_INTER_ROWS) -> Path:
    """A RecBole-format ml-100k folder: 2 users, 2 movies, the given rating rows (file lines 2, 3, ...)."""
    write(folder / "ml-100k.user", ML_USER_HEADER + "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n")
    write(
        folder / "ml-100k.item",
        ML_ITEM_HEADER + "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "172\tEmpire Strikes Back, The\t1980\tAction Adventure Sci-Fi\n",
    )
    write(folder / "ml-100k.inter", ML_INTER_HEADER + "".join(r + "\n" for r in inter_rows))
    return folder


SE_USERS = """\
<?xml version="1.0" encoding="utf-8"?>
<users>
  <row Id="1" Reputation="10" AboutMe="&lt;p&gt;I write &lt;b&gt;Plutus&lt;/b&gt; &amp;amp; Haskell&lt;/p&gt;" />
  <row Id="2" Reputation="5" AboutMe="" />
</users>
"""
SE_POSTS = """\
<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" CreationDate="2021-04-27T15:06:44.553" Score="3" Body="&lt;p&gt;How?&lt;/p&gt;" OwnerUserId="1" Title="Staking" Tags="&lt;plutus&gt;&lt;haskell&gt;" />
  <row Id="2" PostTypeId="2" ParentId="1" CreationDate="2021-04-28T15:06:44.553" Score="1" Body="Like this." OwnerUserId="2" />
  <row Id="3" PostTypeId="1" CreationDate="2021-04-29T15:06:44.553" Score="0" Body="Why?" OwnerUserId="2" Title="Fees" Tags="&lt;plutus&gt;" />
</posts>
"""
SE_COMMENTS = """\
<?xml version="1.0" encoding="utf-8"?>
<comments>
  <row Id="9" PostId="2" Score="0" Text="Thanks!" CreationDate="2021-04-28T16:00:00.000" UserId="1" />
</comments>
"""


def se_folder(folder: Path, users: str | bytes = SE_USERS, posts: str | bytes = SE_POSTS) -> Path:
    """A Stack Exchange dump: 2 users, questions 1 and 3, answer 2 (to 1), a comment on the answer."""
    write(folder / "Users.xml", users)
    write(folder / "Posts.xml", posts)
    write(folder / "Comments.xml", SE_COMMENTS)
    return folder


FACES_CSV = "face_id,face_age,face_gender,face_eth\n001,24,female,white\n002,NA,male,black\n"
RATINGS_HEADER = "rating,rater_id,face_id,rater_sex,rater_age\n"
RATINGS_ROWS = ["3,S1,I001,female,17", "6,S1,I002,female,17", "5,S2,I001,male,30"]


def faces_folder(folder: Path, rows: list[str] = RATINGS_ROWS, gz: bool = False) -> Path:
    """A London-Set-layout folder: faces 001 and 002 (age NA) with images, the given rating rows."""
    write(folder / "faces.csv", FACES_CSV)
    for n in ("001", "002"):
        write(folder / "images" / f"{n}_03.jpg", b"\xff\xd8 not really a jpeg")
    text = RATINGS_HEADER + "".join(r + "\n" for r in rows)
    if gz:
        write(folder / "ratings.csv.gz", gzip.compress(text.encode()))
    else:
        write(folder / "ratings.csv", text)
    return folder


INTER_CSV = "user_id,item_id,rating\nu1,i1,5\nu1,i2,3\nu2,i1,4\n"
USERS_CSV = "user_id,age\nu1,30\nu2,41\n"
ITEMS_CSV = "item_id,title\ni1,Alpha\ni2,Beta\n"
RATED = ColumnMapping(value="rating")
RATED_WITH_AGE = ColumnMapping(value="rating", user_attributes=["age"])
RATED_WITH_TITLE = ColumnMapping(value="rating", item_title="title")


# -- real data: MovieLens-100k ---------------------------------------------------------------------

# the ml100k fixture: tests/persona/conftest.py


def test_movielens_100k_records(ml100k):
    users, items = by_id(ml100k.users, "user_id"), by_id(ml100k.items, "item_id")
    assert (len(users), len(items), len(ml100k.interactions)) == (943, 1682, 100000)
    assert users["1"].attributes == {"age": 24, "gender": "M", "occupation": "technician"}
    assert items["1"].title == "Toy Story"
    assert "Animation" in items["1"].tags and "unknown" not in items["1"].tags
    assert items["172"].title == "The Empire Strikes Back"
    assert not [t for t in (i.title for i in items.values()) if re.search(r", (The|A|An)$", t)]
    assert {x.value for x in ml100k.interactions} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert all(x.kind == "rating" and x.timestamp > 8e8 for x in ml100k.interactions)
    assert ml100k.meta["demographics"] == ["age", "gender", "occupation"] and not ml100k.problems.counts


def test_movielens_100k_round_trip_through_workspace(ml100k, tmp_path):
    path = tmp_path / "w.duckdb"
    with Workspace(path) as w:
        assert write_dataset(w, ml100k)["interactions"] == 100000
    with Workspace(path, read_only=True) as w:  # what was committed, read back from disk
        assert w.query("SELECT n_users, n_items, n_interactions FROM datasets WHERE dataset_id = 'ml-100k'") == [
            (943, 1682, 100000)
        ]
        assert w.query(
            "SELECT count(DISTINCT user_id), count(DISTINCT item_id), count(*), min(value), max(value)"
            " FROM interactions WHERE dataset_id = 'ml-100k'"
        ) == [(943, 1682, 100000, 1.0, 5.0)]
        assert w.scalar("SELECT count(*) FROM users WHERE dataset_id = 'ml-100k'") == 943
        users, items = load_users(w, "ml-100k"), load_items(w, "ml-100k")
        inters = load_interactions(w, "ml-100k")
    assert users["1"].attributes == {"age": 24, "gender": "M", "occupation": "technician"}
    assert (items["1"].title, items["172"].title) == ("Toy Story", "The Empire Strikes Back")
    assert items["1"].tags == by_id(ml100k.items, "item_id")["1"].tags

    def key(x):
        return (x.user_id, x.item_id, x.kind, x.value, x.timestamp)

    assert Counter(map(key, inters)) == Counter(map(key, ml100k.interactions))


def test_movielens_folder_in_recbole_format(tmp_path):
    bundle = load_movielens(path=movielens_folder(tmp_path / "ml"), name="ml-small")
    items = by_id(bundle.items, "item_id")
    assert items["172"].title == "The Empire Strikes Back"
    assert items["172"].text.startswith("The Empire Strikes Back (1980). Genres: Action, Adventure, Sci-Fi")
    assert items["1"].tags == ("Animation", "Children's", "Comedy")
    assert by_id(bundle.users, "user_id")["2"].attributes == {"age": 53, "gender": "F", "occupation": "other"}
    assert [(x.user_id, x.item_id, x.value, x.timestamp) for x in bundle.interactions] == [
        ("1", "1", 5.0, 874965758.0),
        ("1", "172", 4.0, 874965478.0),
        ("2", "1", 3.0, 888551199.0),
    ]


# -- real data: Stack Exchange ---------------------------------------------------------------------


def _xml_rows(path: Path) -> list[dict[str, str]]:
    return [dict(r.attrib) for r in ET.parse(path).getroot().iter("row")]


def test_stackexchange_cardano_matches_an_independent_count(tmp_path):
    folder = shared("stackexchange-cardano")
    bundle = load_stackexchange(folder)

    # Independent reading of the dump with ElementTree.
    known_users = {u["Id"]: u for u in _xml_rows(folder / "Users.xml")}
    posts = _xml_rows(folder / "Posts.xml")
    questions = {p["Id"]: p for p in posts if p["PostTypeId"] == "1"}
    answers = [p for p in posts if p["PostTypeId"] == "2" and p.get("ParentId") in questions]
    tags_of = {qid: re.findall(r"<([^<>]+)>", q.get("Tags", "")) for qid, q in questions.items()}
    post_to_question = {qid: qid for qid in questions} | {a["Id"]: a["ParentId"] for a in answers}
    comments = [
        c
        for c in _xml_rows(folder / "Comments.xml")
        if c["PostId"] in post_to_question and c.get("UserId") in known_users
    ]
    tag_posts = Counter()
    for qid, q in questions.items():
        if q.get("OwnerUserId") in known_users:
            tag_posts.update((q["OwnerUserId"], t) for t in tags_of[qid])
    for a in answers:
        if a.get("OwnerUserId") in known_users:
            tag_posts.update((a["OwnerUserId"], t) for t in tags_of[a["ParentId"]])
    asks = [q for q in questions.values() if q.get("OwnerUserId") in known_users]
    answered = [a for a in answers if a.get("OwnerUserId") in known_users]
    active = {p["OwnerUserId"] for p in asks + answered} | {c["UserId"] for c in comments}

    items = by_id(bundle.items, "item_id")
    question_items = {i for i, it in items.items() if it.kind == "question"}
    assert question_items == {f"q{qid}" for qid in questions}
    assert all(items[f"q{qid}"].tags == tuple(tags_of[qid]) and tags_of[qid] for qid in questions)
    all_tags = {t for ts in tags_of.values() for t in ts}
    assert {it.title for it in items.values() if it.kind == "tag"} == all_tags
    assert all_tags <= {t["TagName"] for t in _xml_rows(folder / "Tags.xml")}

    kinds = Counter(x.kind for x in bundle.interactions)
    assert kinds == {"ask": len(asks), "answer": len(answered), "comment": len(comments), "tag": len(tag_posts)}
    tag_values = {(x.user_id, x.item_id.removeprefix("t:")): x.value for x in bundle.interactions if x.kind == "tag"}
    assert tag_values == {k: float(n) for k, n in tag_posts.items()}
    assert max(tag_values.values()) > 1  # counts posts, not just presence

    users = by_id(bundle.users, "user_id")
    assert set(users) == active
    assert all(x.user_id in users and x.item_id in items for x in bundle.interactions)
    texts = [u.text for u in users.values() if u.text]
    with_html = [uid for uid in users if "<p>" in known_users[uid].get("AboutMe", "")]
    assert with_html and all(users[uid].text for uid in with_html)
    assert texts and not [t for t in texts if "<p>" in t or "</" in t or "&lt;" in t or "&amp;" in t]

    with Workspace(tmp_path / "w.duckdb") as w:
        write_dataset(w, bundle)
        assert dict(w.query("SELECT kind, count(*) FROM interactions GROUP BY kind")) == kinds
        assert w.scalar("SELECT count(*) FROM items WHERE kind = 'question'") == len(questions)


def test_stackexchange_small_dump(tmp_path, local_tz_not_utc):
    bundle = load_stackexchange(se_folder(tmp_path / "se"), name="se")
    assert by_id(bundle.users, "user_id")["1"].text == "I write Plutus & Haskell"
    got = sorted((x.user_id, x.item_id, x.kind, x.value) for x in bundle.interactions)
    assert got == sorted(
        [
            ("1", "q1", "ask", 3.0),
            ("2", "q3", "ask", 0.0),
            ("2", "q1", "answer", 1.0),
            ("1", "q1", "comment", 0.0),  # a comment on answer 2 belongs to its question
            ("1", "t:plutus", "tag", 1.0),
            ("1", "t:haskell", "tag", 1.0),
            ("2", "t:plutus", "tag", 2.0),
            ("2", "t:haskell", "tag", 1.0),
        ]
    )
    ask = next(x for x in bundle.interactions if x.kind == "ask" and x.item_id == "q1")
    assert ask.timestamp == pytest.approx(utc(2021, 4, 27, 15, 6, 44, 553000))


# -- real data: faces ------------------------------------------------------------------------------


def test_london_faces(tmp_path):
    folder = shared("london-faces")
    bundle = load_faces(folder)
    with gzip.open(folder / "ratings.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(folder / "faces.csv", newline="") as fh:
        na_age = {"I" + r["face_id"] for r in csv.DictReader(fh) if r["face_age"] == "NA"}

    users, items = by_id(bundle.users, "user_id"), by_id(bundle.items, "item_id")
    assert (len(users), len(items), len(bundle.interactions)) == (2513, 102, 256326)
    assert len(rows) == len(bundle.interactions) == len(users) * len(items)  # every rater rated every face
    assert set(users) == {r["rater_id"] for r in rows} and set(items) == {r["face_id"] for r in rows}
    assert users["S0001"].attributes == {"sex": "female", "age": 17.0}
    assert na_age and na_age <= set(items)  # faces with an unknown age are still imported
    assert all("year-old" not in items[i].text for i in na_age)
    assert all(it.kind == "image" and Path(it.image_uri).is_file() for it in items.values())
    assert {x.value for x in bundle.interactions} <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0}
    assert Counter(x.value for x in bundle.interactions) == Counter(float(r["rating"]) for r in rows)
    assert bundle.meta["sensitive"] is True
    validate_bundle(bundle)


def test_faces_small_folder_gzipped(tmp_path):
    bundle = load_faces(faces_folder(tmp_path / "faces", gz=True))
    items = by_id(bundle.items, "item_id")
    assert set(items) == {"I001", "I002"}
    assert items["I001"].text == "Photo of a 24-year-old white female face, neutral expression."
    assert items["I002"].text == "Photo of a black male face, neutral expression."  # age NA
    assert by_id(bundle.users, "user_id")["S2"].attributes == {"sex": "male", "age": 30.0}
    assert [(x.user_id, x.item_id, x.value) for x in bundle.interactions] == [
        ("S1", "I001", 3.0),
        ("S1", "I002", 6.0),
        ("S2", "I001", 5.0),
    ]


# -- synthetic -------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed():
    a, b = generate_community(60, 40, seed=11), generate_community(60, 40, seed=11)
    assert a == b
    c = generate_community(60, 40, seed=12)
    assert [(x.user_id, x.item_id, x.value) for x in a.interactions] != [
        (x.user_id, x.item_id, x.value) for x in c.interactions
    ]
    assert (a.name, c.name) == ("synthetic-s11", "synthetic-s12")


def test_synthetic_ground_truth_and_planted_preferences(tmp_path):
    bundle = generate_community(200, 150, seed=7)
    personas = bundle.meta["personas"]
    assert all(
        u.ground_truth and u.ground_truth["liked_tags"] == personas[u.ground_truth["persona"]] for u in bundle.users
    )
    items = by_id(bundle.items, "item_id")
    liked: dict[str, list[str]] = {}
    for x in bundle.interactions:
        if x.value >= 4:
            liked.setdefault(x.user_id, []).append(x.item_id)

    def preferred_share(item_ids, preferred) -> float:
        tags = [t for i in item_ids for t in items[i].tags]
        return sum(t in preferred for t in tags) / len(tags)

    liked_share = [
        preferred_share(liked[u.user_id], set(u.ground_truth["liked_tags"])) for u in bundle.users if u.user_id in liked
    ]
    random_share = [preferred_share(list(items), set(u.ground_truth["liked_tags"])) for u in bundle.users]
    assert len(liked_share) > 150
    assert sum(liked_share) / len(liked_share) > 3 * sum(random_share) / len(random_share)

    with Workspace(tmp_path / "w.duckdb") as w:
        write_dataset(w, bundle)
        assert load_users(w, bundle.name)["u0"].ground_truth == bundle.users[0].ground_truth


# -- the generic table importer --------------------------------------------------------------------


def test_table_csv_with_inline_item_and_user_columns(tmp_path, local_tz_not_utc):
    path = write(
        tmp_path / "logs.csv",
        "who,what,stars,when,title,genres,age,gender\n"
        "u1,m1,5,2024-01-01T10:00:00,Alpha,drama|comedy,30,f\n"
        "u1,m2,2,1700000000,Beta,horror,30,f\n"
        "u2,m1,4,2024-01-03T00:00:00+02:00,Alpha,drama|comedy,41,m\n"
        "u2,m2,3,2024-01-04,Beta,horror,41,m\n",
    )
    mapping = ColumnMapping(
        user="who",
        item="what",
        value="stars",
        timestamp="when",
        item_title="title",
        item_tags="genres",
        user_attributes="age,gender",
    )
    bundle = load_table(path, mapping, like_threshold=4)
    assert bundle.name == "logs" and bundle.meta["demographics"] == ["age", "gender"]
    assert [x.timestamp for x in bundle.interactions] == [
        utc(2024, 1, 1, 10),
        1700000000.0,
        utc(2024, 1, 2, 22),
        utc(2024, 1, 4),
    ]
    with Workspace(tmp_path / "w.duckdb") as w:
        write_dataset(w, bundle)
        users, items = load_users(w, "logs"), load_items(w, "logs")
        assert w.scalar("SELECT sum(value) FROM interactions WHERE dataset_id = 'logs'") == 14.0
    assert users["u2"].attributes == {"age": "41", "gender": "m"}
    assert (items["m1"].title, items["m1"].tags) == ("Alpha", ("drama", "comedy"))


def test_table_parquet(tmp_path, local_tz_not_utc):
    path = to_parquet(
        tmp_path / "events.parquet",
        "SELECT * FROM (VALUES (1, 10, 4.5, TIMESTAMP '2024-02-01 12:00:00', 'view'),"
        " (1, 11, 1.0, TIMESTAMP '2024-02-02 00:00:00', 'skip'),"
        " (2, 10, 5.0, NULL, 'view')) t(user_id, item_id, score, ts, action)",
    )
    bundle = load_table(path, ColumnMapping(value="score", timestamp="ts", kind="action"))
    assert bundle.name == "events"
    assert {u.user_id for u in bundle.users} == {"1", "2"} and {i.item_id for i in bundle.items} == {"10", "11"}
    assert [(x.user_id, x.item_id, x.kind, x.value, x.timestamp) for x in bundle.interactions] == [
        ("1", "10", "view", 4.5, utc(2024, 2, 1, 12)),
        ("1", "11", "skip", 1.0, utc(2024, 2, 2)),
        ("2", "10", "view", 5.0, None),
    ]


def test_table_huggingface_dataset_saved_to_disk(tmp_path, local_tz_not_utc):
    datasets = pytest.importorskip("datasets", reason="the `datasets` package (extra 'hf') is not installed")
    datasets.Dataset.from_dict(
        {
            "uid": [7, 8, 8],
            "iid": ["a", "b", "a"],
            "stars": [5.0, 2.0, 4.0],
            "when": ["2024-03-01T00:00:00", "2024-03-02T00:00:00Z", "2024-03-03"],
            "age": [30, 40, 40],
            "review": ["great", "meh", "nice"],
        }
    ).save_to_disk(str(tmp_path / "hfds"))
    bundle = load_table(
        tmp_path / "hfds",
        ColumnMapping(user="uid", item="iid", value="stars", timestamp="when", text="review", user_attributes=["age"]),
    )
    assert bundle.name == "hfds"
    assert {u.user_id: u.attributes for u in bundle.users} == {"7": {"age": 30}, "8": {"age": 40}}
    assert [(x.user_id, x.item_id, x.value, x.timestamp, x.text) for x in bundle.interactions] == [
        ("7", "a", 5.0, utc(2024, 3, 1), "great"),
        ("8", "b", 2.0, utc(2024, 3, 2), "meh"),
        ("8", "a", 4.0, utc(2024, 3, 3), "nice"),
    ]


def test_table_separate_users_and_items_files(tmp_path, local_tz_not_utc):
    inter = write(
        tmp_path / "inter.csv", "user_id,item_id,rating,at\nu1,i1,5,2024-05-01T08:30:00\nu2,i2,2,2024-05-02T09:00:00Z\n"
    )
    users = write(tmp_path / "people.csv", "user_id,age,gender\nu1,30,f\nu2,41,m\nu3,25,x\n")
    items = to_parquet(
        tmp_path / "catalogue.parquet",
        "SELECT * FROM (VALUES ('i1', 'Alpha', 'drama|comedy', 'a.png'),"
        " ('i2', 'Beta', 'horror', NULL)) t(item_id, title, genres, picture)",
    )
    mapping = ColumnMapping(
        value="rating",
        timestamp="at",
        item_title="title",
        item_tags="genres",
        item_image="picture",
        user_attributes=["age", "gender"],
    )
    bundle = load_table(inter, mapping, users=users, items=items, name="mine")
    with Workspace(tmp_path / "w.duckdb") as w:
        summary = write_dataset(w, bundle)
        got_users, got_items = load_users(w, "mine"), load_items(w, "mine")
        got_inters = load_interactions(w, "mine")
    assert summary == {"dataset": "mine", "source": "table", "users": 3, "items": 2, "interactions": 2, "skipped": {}}
    assert got_users["u3"].attributes == {"age": "25", "gender": "x"}  # a user without interactions is kept
    assert (got_items["i1"].title, got_items["i1"].tags, got_items["i1"].image_uri) == (
        "Alpha",
        ("drama", "comedy"),
        "a.png",
    )
    assert got_items["i2"].image_uri is None
    assert [(x.user_id, x.item_id, x.value, x.timestamp) for x in got_inters] == [
        ("u1", "i1", 5.0, utc(2024, 5, 1, 8, 30)),
        ("u2", "i2", 2.0, utc(2024, 5, 2, 9)),
    ]


# -- malformed input -------------------------------------------------------------------------------
# Each case builds its input under a folder and returns the importer call; `lenient` is passed on.

Loader = Callable[[], DatasetBundle]


def truncated_posts(d: Path, lenient: bool) -> Loader:
    cut = SE_POSTS.index('ParentId="1"')  # a download cut off in the middle of line 4
    return lambda: load_stackexchange(se_folder(d, posts=SE_POSTS[:cut]), lenient=lenient)


def latin1_users_xml(d: Path, lenient: bool) -> Loader:
    users = SE_USERS.encode().replace(b'AboutMe=""', b'AboutMe="caf\xe9"')  # line 4
    return lambda: load_stackexchange(se_folder(d, users=users), lenient=lenient)


def post_score_not_a_number(d: Path, lenient: bool) -> Loader:
    posts = SE_POSTS.replace('Score="0"', 'Score="many"')  # question 3, line 5
    return lambda: load_stackexchange(se_folder(d, posts=posts), lenient=lenient)


def latin1_csv(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV.encode().replace(b"u1,i2", b"u1,i\xe92"))  # line 3
    return lambda: load_table(d / "inter.csv", RATED, lenient=lenient)


def csv_missing_rating_column(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV.replace("rating", "score"))
    return lambda: load_table(d / "inter.csv", RATED, lenient=lenient)


def csv_rating_five(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV.replace("u1,i2,3", "u1,i2,five"))  # line 3
    return lambda: load_table(d / "inter.csv", RATED, lenient=lenient)


def csv_conflicting_item_titles(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", "user_id,item_id,rating,title\nu1,i1,5,Alpha\nu2,i1,4,Omega\nu2,i2,1,Beta\n")
    return lambda: load_table(d / "inter.csv", RATED_WITH_TITLE, lenient=lenient)


def duplicate_user_in_users_file(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV)
    write(d / "users.csv", USERS_CSV + "u1,31\n")  # line 4
    return lambda: load_table(d / "inter.csv", RATED_WITH_AGE, users=d / "users.csv", lenient=lenient)


def duplicate_item_in_items_file(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV)
    write(d / "items.csv", ITEMS_CSV + "i2,Beta again\n")  # line 4
    return lambda: load_table(d / "inter.csv", RATED_WITH_TITLE, items=d / "items.csv", lenient=lenient)


def empty_users_file(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV)
    write(d / "users.csv", "")
    return lambda: load_table(d / "inter.csv", RATED_WITH_AGE, users=d / "users.csv", lenient=lenient)


def missing_items_file(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV)
    return lambda: load_table(d / "inter.csv", RATED_WITH_TITLE, items=d / "items.csv", lenient=lenient)


def movielens_short_row(d: Path, lenient: bool) -> Loader:
    rows = [ML_INTER_ROWS[0], "1\t172\t4", ML_INTER_ROWS[2]]  # line 3 lacks the timestamp
    return lambda: load_movielens(path=movielens_folder(d / "ml", rows), lenient=lenient)


def movielens_rating_word(d: Path, lenient: bool) -> Loader:
    rows = [*ML_INTER_ROWS[:2], "2\t1\tthree\t888551199"]  # line 4
    return lambda: load_movielens(path=movielens_folder(d / "ml", rows), lenient=lenient)


def faces_rating_nine(d: Path, lenient: bool) -> Loader:
    rows = [RATINGS_ROWS[0], "9,S1,I002,female,17", RATINGS_ROWS[2]]  # line 3
    return lambda: load_faces(faces_folder(d / "faces", rows), lenient=lenient)


def faces_unknown_face(d: Path, lenient: bool) -> Loader:
    rows = [*RATINGS_ROWS, "4,S2,I999,male,30"]  # line 5
    return lambda: load_faces(faces_folder(d / "faces", rows, gz=True), lenient=lenient)


def parquet_missing_rating_column(d: Path, lenient: bool) -> Loader:
    d.mkdir(parents=True, exist_ok=True)
    to_parquet(d / "inter.parquet", "SELECT 'u1' AS user_id, 'i1' AS item_id")
    return lambda: load_table(d / "inter.parquet", RATED, lenient=lenient)


def parquet_rating_word(d: Path, lenient: bool) -> Loader:
    d.mkdir(parents=True, exist_ok=True)
    to_parquet(
        d / "inter.parquet",
        "SELECT * FROM (VALUES ('u1', 'i1', '5'), ('u1', 'i2', 'five'), ('u2', 'i1', '4')) t(user_id, item_id, rating)",
    )  # row 2
    return lambda: load_table(d / "inter.parquet", RATED, lenient=lenient)


def interaction_of_unknown_user(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", "user_id,item_id,rating\nu1,i1,5\nu9,i1,2\nu2,i2,4\nu1,i2,3\n")
    write(d / "users.csv", USERS_CSV)
    return lambda: load_table(d / "inter.csv", RATED_WITH_AGE, users=d / "users.csv", lenient=lenient)


def name_already_taken(d: Path, lenient: bool) -> Loader:
    write(d / "inter.csv", INTER_CSV)
    return lambda: load_table(d / "inter.csv", RATED, name=EXISTING, lenient=lenient)


@dataclass
class Bad:
    """A malformed input and where its error must point."""

    build: Callable[[Path, bool], Loader]
    file: str | None  # the file (or dataset) name the message starts with
    line: int | None  # line or row number
    field: str | None
    says: str  # the start of what is wrong
    skipped: dict[str, int] | None = None  # what --lenient skips and counts; None: it still raises
    kept: int = 0  # interactions left under --lenient

    def pattern(self) -> str:
        where = rf"(?:^|/){re.escape(self.file)}" if self.file else "^"
        if self.line is not None:
            where += f":{self.line}"
        if self.file:
            where += ": "
        what = f"field '{self.field}': " if self.field else ""
        return where + what + re.escape(self.says)


BAD = [
    pytest.param(Bad(truncated_posts, "Posts.xml", 4, None, "malformed XML"), id="se-truncated-xml"),
    pytest.param(Bad(latin1_users_xml, "Users.xml", 4, None, "not UTF-8 text"), id="se-not-utf8"),
    pytest.param(
        Bad(
            post_score_not_a_number,
            "Posts.xml",
            5,
            "Score",
            "expected an integer, got 'many'",
            {"bad number": 1},
            kept=7,
        ),
        id="se-score-not-a-number",
    ),
    pytest.param(Bad(latin1_csv, "inter.csv", 3, None, "not UTF-8 text"), id="csv-not-utf8"),
    pytest.param(
        Bad(csv_missing_rating_column, "inter.csv", 1, "rating", "missing column(s) rating"), id="csv-missing-column"
    ),
    pytest.param(
        Bad(csv_rating_five, "inter.csv", 3, "rating", "expected a number, got 'five'", {"bad number": 1}, kept=2),
        id="csv-wrong-type",
    ),
    pytest.param(
        Bad(
            csv_conflicting_item_titles,
            "inter.csv",
            3,
            "item_id",
            "item 'i1' has conflicting values",
            {"conflict": 1},
            kept=2,
        ),
        id="csv-conflicting-item",
    ),
    pytest.param(
        Bad(duplicate_user_in_users_file, "users.csv", 4, "user_id", "duplicate user id 'u1'"),
        id="users-file-duplicate-id",
    ),
    pytest.param(
        Bad(duplicate_item_in_items_file, "items.csv", 4, "item_id", "duplicate item id 'i2'"),
        id="items-file-duplicate-id",
    ),
    pytest.param(Bad(empty_users_file, "users.csv", None, None, "empty file"), id="empty-file"),
    pytest.param(Bad(missing_items_file, "items.csv", None, None, "file not found"), id="missing-file"),
    pytest.param(
        Bad(
            movielens_short_row,
            "ml-100k.inter",
            3,
            None,
            "expected 4 tab-separated fields, got 3",
            {"malformed row": 1},
            kept=2,
        ),
        id="movielens-short-row",
    ),
    pytest.param(
        Bad(
            movielens_rating_word,
            "ml-100k.inter",
            4,
            "rating",
            "expected a number, got 'three'",
            {"bad number": 1},
            kept=2,
        ),
        id="movielens-wrong-type",
    ),
    pytest.param(
        Bad(faces_rating_nine, "ratings.csv", 3, "rating", "rating 9.0 outside 1-7", {"bad value": 1}, kept=2),
        id="faces-rating-out-of-range",
    ),
    pytest.param(
        Bad(faces_unknown_face, "ratings.csv.gz", 5, "face_id", "unknown face 'I999'", {"unknown item": 1}, kept=3),
        id="faces-unknown-face",
    ),
    pytest.param(
        Bad(parquet_missing_rating_column, "inter.parquet", None, "rating", "missing column(s) rating"),
        id="parquet-missing-column",
    ),
    pytest.param(
        Bad(
            parquet_rating_word,
            "inter.parquet",
            2,
            "rating",
            "expected a number, got 'five'",
            {"bad number": 1},
            kept=2,
        ),
        id="parquet-wrong-type",
    ),
    # Found by validate_bundle inside write_dataset: located by dataset name and interaction row.
    pytest.param(
        Bad(interaction_of_unknown_user, "inter.csv", 3, "user_id", "unknown user 'u9'", {"unknown user": 1}, kept=3),
        id="unknown-user",
    ),
    pytest.param(
        Bad(name_already_taken, None, None, "name", f"dataset '{EXISTING}' already exists"), id="dataset-name-taken"
    ),
]
ROW_LEVEL = [p for p in BAD if p.values[0].skipped]
STRUCTURAL = [p for p in BAD if not p.values[0].skipped]


@pytest.mark.parametrize("bad", BAD)
def test_malformed_input_is_located_and_leaves_the_workspace_unchanged(bad: Bad, ws, tmp_path):
    load = bad.build(tmp_path / "in", False)
    before = snapshot(ws)
    assert before["datasets"] and before["interactions"]  # starts from a workspace holding a dataset
    with pytest.raises(DataError, match=bad.pattern()) as info:
        write_dataset(ws, load())
    assert (info.value.line, info.value.field) == (bad.line, bad.field)
    assert snapshot(ws) == before


@pytest.mark.parametrize("bad", ROW_LEVEL)
def test_lenient_skips_and_counts_bad_rows(bad: Bad, ws, tmp_path):
    existing = snapshot(ws, EXISTING)
    bundle = bad.build(tmp_path / "in", True)()
    summary = write_dataset(ws, bundle)
    assert dict(bundle.problems.counts) == bad.skipped == summary["skipped"]
    assert bundle.problems.examples and re.search(bad.pattern(), bundle.problems.examples[0])
    assert ws.scalar("SELECT n_interactions FROM datasets WHERE dataset_id = ?", [bundle.name]) == bad.kept
    assert ws.scalar("SELECT count(*) FROM interactions WHERE dataset_id = ?", [bundle.name]) == bad.kept
    assert snapshot(ws, EXISTING) == existing


@pytest.mark.parametrize("bad", STRUCTURAL)
def test_lenient_still_rejects_structural_problems(bad: Bad, ws, tmp_path):
    before = snapshot(ws)
    with pytest.raises(DataError, match=bad.pattern()):
        write_dataset(ws, bad.build(tmp_path / "in", True)())
    assert snapshot(ws) == before


@pytest.mark.parametrize("engine", ["records", "auto"])
def test_write_failing_midway_rolls_back_and_workspace_stays_usable(engine, ws, tmp_path, monkeypatch):
    """A write that fails after the dataset row, users and items are in leaves the workspace as it was: for a
    bundle of records (written by ``insert_columns``) and for a staged dataset (``insert_staged``)."""
    import workbench.store.datasets as store

    bundle = load_movielens(path=movielens_folder(tmp_path / "ml"), engine=engine)
    assert isinstance(bundle, DatasetBundle) == (engine == "records")
    before = snapshot(ws)
    real_insert, real_staged = Workspace.insert_columns, store.insert_staged

    def insert_then_fail(self, table, columns, casts=None):
        if table == "interactions":  # the dataset row, users and items are already inserted
            raise RuntimeError("disk full")
        return real_insert(self, table, columns, casts)

    def staged_then_fail(con, table, select, params):
        if table == "interactions":
            raise RuntimeError("disk full")
        return real_staged(con, table, select, params)

    monkeypatch.setattr(Workspace, "insert_columns", insert_then_fail)
    monkeypatch.setattr(store, "insert_staged", staged_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(ws, bundle)
    assert snapshot(ws) == before
    monkeypatch.undo()
    assert write_dataset(ws, bundle)["interactions"] == 3
    assert ws.scalar("SELECT count(*) FROM datasets") == 2


def test_bad_byte_line_number_after_a_utf8_bom(tmp_path):
    path = write(tmp_path / "inter.csv", b"\xef\xbb\xbfuser_id,item_id\nu1,i1\n\xe9u2,i2\n")  # bad byte on line 3
    with pytest.raises(DataError, match=r"inter\.csv:3: not UTF-8"):
        load_table(path)


def test_movielens_rating_out_of_range_and_nan_timestamp(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    write(
        folder / "ml-100k.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttechnician\t00000\n",
    )
    write(
        folder / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation\n",
    )
    write(
        folder / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t9\t881250949\n1\t1\t4\tnan\n1\t1\t4\t881250950\n",
    )
    with pytest.raises(DataError, match=r"ml-100k\.inter:2: field 'rating': rating 9 outside 1-5"):
        load_movielens(folder)
    bundle = load_movielens(folder, lenient=True)
    assert dict(bundle.problems.counts) == {"bad value": 1, "bad number": 1} and len(bundle.interactions) == 1


def test_table_rejects_non_finite_timestamps(tmp_path):
    path = write(tmp_path / "inter.csv", "user_id,item_id,ts\nu1,i1,inf\n")
    with pytest.raises(DataError, match=r"inter\.csv:2: field 'ts': expected a finite timestamp"):
        load_table(path, ColumnMapping(timestamp="ts"))
