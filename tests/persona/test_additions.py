"""``pwb data import table ... --into DATASET``: a second file of the same users and items added to a stored
dataset (tags with their text, users' attributes, items' columns) in one transaction."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import cli
from persona.data.additions import add_to_dataset, read_addition
from persona.data.splits import SplitParams, make_split
from persona.data.table import ColumnMapping
from workbench.store import Workspace
from workbench.store.datasets import dataset_meta, dataset_params, load_interactions, load_items, load_users
from workbench.store.splits import hidden_targets, split_parts, split_roles, visible_interactions

IDS = ["--user-col", "userId", "--item-col", "movieId"]
TAGS = [*IDS, "--kind", "tag", "--text-col", "tag", "--timestamp-col", "timestamp"]
RATED = ["--value-col", "rating", "--timestamp-col", "timestamp", "--like-threshold", "4"]
TAG_WORDS = ["dark comedy", "space opera", "slow burn", "twist ending"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def ratings_rows(n_users: int = 40, n_items: int = 60, per_user: int = 15, seed: int = 0) -> list[list]:
    r = random.Random(seed)
    return [
        [f"u{u}", f"m{i}", r.randint(1, 5), 1_000_000_000 + r.randint(0, 10**8)]
        for u in range(n_users)
        for i in r.sample(range(n_items), per_user)
    ]


def tag_rows(seed: int = 1) -> list[list]:
    """Tags of the first 20 users on movies they rated or not, with one row repeated."""
    r = random.Random(seed)
    rows = [
        [f"u{u}", f"m{r.randrange(60)}", r.choice(TAG_WORDS), 1_200_000_000 + r.randint(0, 10**6)]
        for u in range(20)
        for _ in range(3)
    ]
    return rows + [rows[0]]


def pwb(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def pwb_fails(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 1, res.output
    return res.output


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of the dataset and split tables."""
    with Workspace(db, read_only=True) as ws:
        tables = ("datasets", "users", "items", "interactions", "splits", "split_users", "split_items")
        return {t: ws.query(f"SELECT * FROM {t} ORDER BY ALL") for t in tables}


@pytest.fixture
def films(tmp_path) -> Path:
    """A workspace holding ``films``: 40 users' ratings of 60 movies imported from a CSV (no titles)."""
    db = tmp_path / "w.duckdb"
    ratings = write_csv(tmp_path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings_rows())
    pwb("data", "import", "table", str(ratings), "--name", "films", *IDS, *RATED, "--db", str(db))
    return db


def test_tags_into_a_dataset_add_their_text_once(films, tmp_path):
    tags = write_csv(tmp_path / "tags.csv", ["userId", "movieId", "tag", "timestamp"], tag_rows())
    out = pwb("data", "import", "table", str(tags), "--into", "films", *TAGS, "--db", str(films))
    assert out.splitlines() == [
        "added to films: interactions +60 (tag), users +0, items +0, attributes: none",
        "skipped: duplicate 1",  # the repeated row
    ]
    with Workspace(films, read_only=True) as ws:
        stored = [x for x in load_interactions(ws, "films") if x.kind == "tag"]
        assert sorted((x.user_id, x.item_id, x.text, x.timestamp) for x in stored) == sorted(
            {(u, i, t, float(ts)) for u, i, t, ts in tag_rows()}
        )
        assert len(load_interactions(ws, "films")) == 600 + 60
        assert ws.scalar("SELECT n_interactions FROM datasets WHERE dataset_id = 'films'") == 660
        (entry,) = dataset_params(ws, "films")["additions"]
        assert entry["interactions"] == str(tags) and entry["added"]["interactions"] == 60
        assert entry["mapping"]["text"] == "tag" and entry["mapping"]["default_kind"] == "tag"
    before = snapshot(films)
    again = json.loads(
        pwb("data", "import", "table", str(tags), "--into", "films", *TAGS, "--json", "--db", str(films))
    )
    assert (again["interactions"], again["skipped"]) == (0, {"duplicate": 61})
    assert snapshot(films) == before  # the same file twice adds nothing, and writes nothing


def test_users_attributes_merge_and_a_conflict_names_the_column_and_the_id(films, tmp_path):
    r = random.Random(2)
    people = [[f"u{u}", r.randint(18, 70), r.choice("FM")] for u in range(40)]
    users = write_csv(tmp_path / "users.csv", ["userId", "age", "gender"], people)
    args = ["data", "import", "table", "--users-file", str(users), "--user-attrs", "age,gender", "--into", "films"]
    out = pwb(*args, "--user-col", "userId", "--db", str(films))
    assert (
        out.strip()
        == "added to films: interactions +0, users +0, items +0, attributes: users age +40, users gender +40"
    )
    with Workspace(films, read_only=True) as ws:
        assert load_users(ws, "films")["u7"].attributes == {"age": str(people[7][1]), "gender": people[7][2]}
        assert dataset_meta(ws, "films")["demographics"] == ["age", "gender"]
    # one age changed, on line 9 of the file (user u7): refused, naming the column and the user
    people[7][1] = people[7][1] + 1
    write_csv(users, ["userId", "age", "gender"], people)
    before = snapshot(films)
    err = pwb_fails(*args, "--user-col", "userId", "--db", str(films))
    assert (
        f"users.csv:9: field 'age': user 'u7' has age '{people[7][1] - 1}' in dataset 'films', this file says " in err
    )
    assert "--overwrite" in err and snapshot(films) == before
    pwb(*args, "--user-col", "userId", "--overwrite", "--db", str(films))
    with Workspace(films, read_only=True) as ws:
        assert load_users(ws, "films")["u7"].attributes["age"] == str(people[7][1])
        assert load_users(ws, "films")["u8"].attributes["age"] == str(people[8][1])


def test_items_columns_fill_placeholders_merge_tags_and_refuse_a_changed_title(films, tmp_path):
    header = ["movieId", "title", "genres"]
    items = write_csv(tmp_path / "items.csv", header, [[f"m{i}", f"Film {i}", "drama|noir"] for i in range(60)])
    args = ["data", "import", "table", "--into", "films", "--items-file", str(items), *IDS]
    cols = ["--item-title-col", "title", "--item-tags-col", "genres", "--db", str(films)]
    out = pwb(*args, *cols)
    assert (
        out.strip()
        == "added to films: interactions +0, users +0, items +0, attributes: items title +60, items tags +60"
    )
    write_csv(items, header, [[f"m{i}", f"Film {i}", "noir|heist"] for i in range(60)])
    pwb(*args, *cols)
    with Workspace(films, read_only=True) as ws:
        m3 = load_items(ws, "films")["m3"]
    # the id placeholder gave way to the title (and the text, which defaulted to it); tags are the union
    assert (m3.title, m3.text, m3.tags) == ("Film 3", "Film 3", ("drama", "noir", "heist"))
    write_csv(items, header, [[f"m{i}", "Another" if i == 5 else f"Film {i}", ""] for i in range(60)])
    before = snapshot(films)
    err = pwb_fails(*args, *cols)
    assert (
        "items.csv:7: field 'title': item 'm5' has title 'Film 5' in dataset 'films', this file says 'Another'" in err
    )
    assert snapshot(films) == before


def test_ids_new_to_the_dataset_are_refused_skipped_or_added(films, tmp_path):
    rows = [["u1", "m1", "cult", 5], ["u99", "m1", "cult", 6], ["u98", "m77", "cult", 7], ["u2", "m78", "cult", 8]]
    tags = write_csv(tmp_path / "tags.csv", ["userId", "movieId", "tag", "timestamp"], rows)
    cmd = ["data", "import", "table", str(tags), "--into", "films", *TAGS, "--db", str(films)]
    before = snapshot(films)
    err = pwb_fails(*cmd)
    assert "tags.csv:3: field 'userId': 2 user id(s) are not in dataset 'films' (first: 'u99')" in err
    assert "--add-new" in err and snapshot(films) == before
    lenient = json.loads(pwb(*cmd, "--lenient", "--json"))
    assert (lenient["interactions"], lenient["users"], lenient["items"]) == (1, 0, 0)  # only u1's row is kept
    assert lenient["skipped"] == {"unknown user": 2, "unknown item": 1}  # rows: u99's and u98's, then m78's
    assert lenient["examples_of_skipped"][0].startswith(f"{tags}:3: field 'userId': user 'u99' is not in dataset")
    added = json.loads(pwb(*cmd, "--add-new", "--json"))
    assert (added["interactions"], added["users"], added["items"], added["skipped"]) == (3, 2, 2, {"duplicate": 1})
    with Workspace(films, read_only=True) as ws:
        assert load_items(ws, "films")["m77"].kind == load_items(ws, "films")["m1"].kind  # the dataset's kind
        assert load_users(ws, "films")["u99"].attributes == {}
        assert ws.scalar("SELECT n_users FROM datasets WHERE dataset_id = 'films'") == 42


def test_a_failing_addition_leaves_the_dataset_as_it_was(films, tmp_path, monkeypatch):
    rows = [[f"u{u}", f"m{u}", "cult", 1_300_000_000 + u, "M"] for u in range(10)]
    good = write_csv(tmp_path / "tags.csv", ["userId", "movieId", "tag", "timestamp", "gender"], rows)
    bad = write_csv(
        tmp_path / "bad.csv",
        ["userId", "movieId", "tag", "timestamp", "gender"],
        [*rows, ["u3", "m3", "x", "soon", "M"]],
    )
    cmd = ["data", "import", "table", "--into", "films", *TAGS, "--user-attrs", "gender", "--db", str(films)]
    before = snapshot(films)
    assert "bad.csv:12: field 'timestamp': expected seconds since the epoch or an ISO date, got 'soon'" in pwb_fails(
        *cmd[:3], str(bad), *cmd[3:]
    )
    assert snapshot(films) == before
    # a failure inside the transaction, after the interactions are inserted, rolls them back too
    real = Workspace.update_columns

    def fail_on_users(self, table, *args, **kwargs):
        if table == "users":
            raise RuntimeError("disk full")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(Workspace, "update_columns", fail_on_users)
    with Workspace(films) as ws, pytest.raises(RuntimeError, match="disk full"):
        add_to_dataset(
            ws,
            "films",
            read_addition(
                good, ColumnMapping("userId", "movieId", timestamp="timestamp", text="tag", user_attributes="gender")
            ),
        )
    assert snapshot(films) == before
    monkeypatch.undo()
    assert "interactions +10 (tag)" in pwb(*cmd[:3], str(good), *cmd[3:])


def test_added_interactions_follow_a_split_made_before(films, tmp_path):
    """A held-out user's new interaction on an item hidden from them stays hidden; on a visible item it is
    visible; on an item the split never gave them it is left out; a train user's is visible."""
    with Workspace(films) as ws:
        split = make_split(ws, "films", SplitParams(seed=0, min_interactions=10))["split"]
        roles = split_roles(ws, split)
        held = next(u for u, r in roles.items() if r == "heldout")
        train = next(u for u, r in roles.items() if r == "train")
        parts = ws.query(
            "SELECT item_id, part, label FROM split_items WHERE split_id = ? AND user_id = ?", [split, held]
        )
        hidden_item = next(i for i, part, label in parts if part == "hidden" and label != "unseen")
        negative = next(i for i, part, label in parts if label == "unseen")
        visible_item = next(i for i, part, _ in parts if part == "visible")
        unassigned = next(f"m{i}" for i in range(60) if f"m{i}" not in {p[0] for p in parts})
        targets = hidden_targets(ws, split)
    rows = [[held, i, f"tag on {i}", 1_400_000_000] for i in (hidden_item, negative, visible_item, unassigned)]
    rows.append([train, "m0", "tag of a train user", 1_400_000_000])
    tags = write_csv(tmp_path / "tags.csv", ["userId", "movieId", "tag", "timestamp"], rows)
    out = json.loads(pwb("data", "import", "table", str(tags), "--into", "films", *TAGS, "--json", "--db", str(films)))
    assert out["splits"] == [{"split": split, "visible": 2, "hidden": 2, "on_negatives": 1, "outside": 1}]
    with Workspace(films, read_only=True) as ws:
        shown = {(x.user_id, x.text) for x in visible_interactions(ws, split) if x.kind == "tag"}
        assert shown == {(held, f"tag on {visible_item}"), (train, "tag of a train user")}
        assert hidden_targets(ws, split) == targets  # the targets are those the split drew
    text = pwb("data", "import", "table", str(tags), "--into", "films", *TAGS, "--add-new", "--db", str(films))
    assert "split" not in text  # nothing new: no split note


def test_tag_texts_reach_the_persona_context_end_to_end(tmp_path):
    """A CSV import, a CSV of tags --into it, a split, `pwb personas mine --encoder tfidf`: the tags' texts are
    in the mined split's visible interactions (every train user's, and a held-out user's on visible items)."""
    from persona.mining import load_context

    db = tmp_path / "e2e.duckdb"
    ratings = write_csv(tmp_path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings_rows())
    tags = write_csv(tmp_path / "tags.csv", ["userId", "movieId", "tag", "timestamp"], tag_rows())
    genres = ["drama", "noir", "comedy", "western", "sci-fi", "romance"]
    items = write_csv(
        tmp_path / "movies.csv",
        ["movieId", "title", "genres"],
        [[f"m{i}", f"Film {i}", f"{genres[i % 6]}|{genres[(i // 6) % 6]}"] for i in range(60)],
    )
    cols = ["--items-file", str(items), "--item-title-col", "title", "--item-tags-col", "genres"]
    pwb("data", "import", "table", str(ratings), "--name", "films", *IDS, *RATED, *cols, "--db", str(db))
    pwb("data", "import", "table", str(tags), "--into", "films", *TAGS, "--db", str(db))
    pwb("data", "split", "--dataset", "films", "--min-interactions", "10", "--db", str(db))
    mined = json.loads(pwb("personas", "mine", "--encoder", "tfidf", "--json", "--db", str(db)))
    assert mined["split"] == "films/s0"
    with Workspace(db, read_only=True) as ws:
        ctx = load_context(ws, "films/s0")
        roles = split_roles(ws, "films/s0")
        personas = {r[0] for r in ws.query("SELECT user_id FROM personas WHERE split_id = 'films/s0'")}
    tagged = {(u, i, t) for u, i, t, _ in tag_rows()}
    seen = {(x.user_id, x.item_id, x.text) for xs in ctx.visible.values() for x in xs if x.kind == "tag"}
    assert seen and seen <= tagged
    train_tags = {(u, i, t) for u, i, t in tagged if roles[u] == "train"}
    assert train_tags and train_tags <= seen  # every train user's tags, with their text
    assert {u for u, _, _ in seen} <= personas  # the users whose tags are visible have personas
    with Workspace(db, read_only=True) as ws:
        parts = split_parts(ws, "films/s0", sorted(u for u, r in roles.items() if r != "train"))
    assert all(parts[(u, i)][0] == "visible" for u, i, _ in seen if roles[u] != "train")  # none of a hidden item
    # and the cards quote them: a tagged item's evidence snippet carries the user's own words
    shown = 0
    for u in sorted({u for u, _, _ in train_tags}):
        card = json.loads(pwb("personas", "show", u, "--json", "--db", str(db)))
        texts = {t for u2, _, t in seen if u2 == u}
        snippets = [e["snippet"] for e in card["evidence"]]
        assert not any(s.count("their words:") > 1 for s in snippets)
        shown += any(t in s and "| their words: " in s for s in snippets for t in texts)
    assert shown > 0, "no card quotes a tag its user wrote"


def test_into_says_what_is_missing(films, tmp_path):
    users = write_csv(tmp_path / "users.csv", ["userId", "age"], [["u1", 30]])
    assert "field 'source': nothing to add" in pwb_fails(
        "data", "import", "table", "--into", "films", "--db", str(films)
    )
    err = pwb_fails("data", "import", "table", "--into", "films", "--users-file", str(users), *IDS, "--db", str(films))
    assert "field 'user_attributes': a users file adds attribute columns, and none is named" in err
    assert "No dataset 'film' in" in pwb_fails(
        "data", "import", "table", str(users), "--into", "film", "--db", str(films)
    )
    res = CliRunner().invoke(cli, ["data", "import", "table", str(users), "--into", "films", "--name", "x"])
    assert res.exit_code == 2 and "--into keeps the dataset's own" in res.output
