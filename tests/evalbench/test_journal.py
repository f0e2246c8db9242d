"""The journal: an acknowledged write is on disk before the answer, applied exactly once, and one bad
record never takes the others with it."""

import json
import os

import pytest

from workbench.records import Evidence, PersonaCard
from workbench.store.journal import Journal, card_to_dict, journal_path
from workbench.store.personas import load_personas
from workbench.store.workspace import Workspace


def _card(i: int, **kw) -> PersonaCard:
    return PersonaCard(
        f"u{i}",
        f"likes quiet films {i}",
        [{"name": "Drama", "weight": 0.5}],
        [Evidence(f"i{i}", 0.25, "a film")],
        [0.1, 0.2],
        "test-v1",
        {"age": "30"},
        **kw,
    )


def _persona(j: Journal, card: PersonaCard) -> str:
    return j.append("persona", {"split_id": "s0", "encoder": "enc", "card": card_to_dict(card)})


def test_appended_entries_are_replayed_once_on_the_next_read_write_open(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    j = Journal(db)
    ids = [_persona(j, _card(i)) for i in range(5)]
    assert len(set(ids)) == 5 and len(j.pending()) == 5
    with Workspace(db) as ws:  # the open applies them
        assert ws.replayed.applied == 5 and not ws.replayed.rejected
        cards = load_personas(ws, "s0", "enc")
        assert sorted(cards) == [f"u{i}" for i in range(5)]
        assert cards["u3"].evidence[0].item_id == "i3" and cards["u3"].demographics == {"age": "30"}
        assert ws.scalar("SELECT count(*) FROM journal_applied") == 0  # the file is gone, so are its ids
    assert j.files() == [] and not journal_path(db).exists()
    with Workspace(db) as ws:
        assert ws.replayed is None or ws.replayed.applied == 0


def test_a_replay_interrupted_after_its_commit_does_not_apply_twice(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    j = Journal(db)
    j.append("upsert", {"table": "settings", "row": {"key": "k", "value": "1"}})
    with Workspace(db, read_only=False) as ws:
        pass
    # simulate the crash: the same entries again in a renamed-aside file, their ids already applied
    entry = {
        "id": "e1",
        "kind": "upsert",
        "at": 0,
        "data": {
            "table": "labels",
            "row": {
                "label_id": "L1",
                "user_id": "u",
                "prompt_id": "p",
                "system_generation_id": "g1",
                "baseline_generation_id": "g2",
                "system_side": "a",
                "choice": "a",
            },
        },
    }
    aside = db.parent / (journal_path(db).name + ".1-1.replaying")
    aside.write_text(json.dumps(entry) + "\n")
    with Workspace(db) as ws:
        assert ws.replayed.applied == 1
    aside.write_text(json.dumps(entry) + "\n")  # the file came back (the unlink never happened)
    with Workspace(db) as ws:
        ws.con.execute("INSERT INTO journal_applied (entry_id, kind, source) VALUES ('e1', 'upsert', 'x')")
    aside.write_text(json.dumps(entry) + "\n")
    with Workspace(db) as ws:
        assert ws.replayed.skipped == 1 and ws.replayed.applied == 0
        assert ws.scalar("SELECT count(*) FROM labels WHERE label_id = 'L1'") == 1


def test_one_bad_record_among_ten_is_rejected_alone_and_kept(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    j = Journal(db)
    for i in range(5):
        _persona(j, _card(i))
    bad = card_to_dict(_card(99))
    bad["embedding"] = ["not", "numbers"]  # passes JSON, fails the FLOAT[] column
    j.append("persona", {"split_id": "s0", "encoder": "enc", "card": bad})
    for i in range(5, 10):
        _persona(j, _card(i))
    with Workspace(db) as ws:
        assert ws.replayed.applied == 10 and len(ws.replayed.rejected) == 1
        assert len(load_personas(ws, "s0", "enc")) == 10
        kept = ws.query("SELECT entry, error FROM journal_rejected")
        assert len(kept) == 1 and '"u99"' in kept[0][0] and kept[0][1]


def test_text_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    j = Journal(db)
    with pytest.raises(ValueError, match="cannot be stored"):
        _persona(j, PersonaCard("u1", "x", demographics={"occupation": "\ud800"}))
    with pytest.raises(ValueError, match="table"):
        j.append("upsert", {"table": "scores", "row": {"x": 1}})
    assert j.pending() == []


def test_a_line_torn_by_a_crash_is_skipped_and_the_rest_applied(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    j = Journal(db)
    _persona(j, _card(1))
    with open(journal_path(db), "ab") as fh:
        fh.write(b'{"id": "half", "kind": "pers')  # a crash in the middle of an append (never acknowledged)
    with Workspace(db) as ws:
        assert ws.replayed.applied == 1 and ws.replayed.torn == 1
        assert list(load_personas(ws, "s0", "enc")) == ["u1"]


def test_appends_are_fsynced_before_they_return(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    calls = []
    name = "fdatasync" if hasattr(os, "fdatasync") else "fsync"
    real = getattr(os, name)
    monkeypatch.setattr(os, name, lambda fd: (calls.append(fd), real(fd)))
    Journal(db).append("upsert", {"table": "settings", "row": {"key": "k", "value": "v"}})
    assert calls, "append returned without an fsync"
