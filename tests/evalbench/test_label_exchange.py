"""Labels out to Label Studio / CSV and back: blind files, choices mapped to the right side, idempotent import."""

import csv
import json

import pytest
from click.testing import CliRunner

from apps.cli import cli
from evalbench.label_exchange import LABEL_STUDIO_CONFIG, export_tasks, import_labels, pair_key
from evalbench.labels import human_preference, label_pairs
from workbench.errors import DataError
from workbench.store.labels import list_labels
from workbench.store.workspace import Workspace


def _draw(ws, cid, user, prompt_id, persona_id):
    ws.con.execute(
        "INSERT INTO conditions (condition_id, user_id, prompt, seed, persona_id, prompt_id) VALUES (?, ?, ?, 0, ?, ?)",
        [cid, user, f"text {cid}", persona_id, prompt_id],
    )
    ws.con.execute(
        "INSERT INTO generations (generation_id, condition_id, image_path, backend, model, user_id) "
        "VALUES (?, ?, ?, 'patch', 'patch:fast', ?)",
        [f"g-{cid}", cid, f"images/{cid}.png", user],
    )


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "w.duckdb"
    with Workspace(path) as w:
        for u in range(10):
            _draw(w, f"s{u}", f"u{u}", "p/p1", f"split/gat/u{u}")
            _draw(w, f"b{u}", f"u{u}", "p/p1", None)
    return path


def test_the_export_is_blind_and_label_studio_choices_come_back_on_the_right_side(db, tmp_path):
    out = tmp_path / "tasks.json"
    with Workspace(db, read_only=True) as ws:
        res = export_tasks(ws, "label-studio", out, image_prefix="https://cdn.example/img")
        pairs = {pair_key(p): p for p in label_pairs(ws)}
    assert res["pairs"] == 10 and (tmp_path / "tasks.xml").read_text() == LABEL_STUDIO_CONFIG
    tasks = json.loads(out.read_text())
    text = out.read_text()
    assert "g-s" not in text and "split/gat" not in text and "system" not in text  # nothing names the persona side
    assert tasks[0]["data"]["image_a"].startswith("https://cdn.example/img/")
    # annotate: everyone picks the persona image, except one cancelled and one flagged
    for n, t in enumerate(tasks):
        p = pairs[t["data"]["pair_key"]]
        side = "left" if p.system_side == "a" else "right"
        result = [
            {"type": "pairwise", "from_name": "choice", "to_name": ["image_a", "image_b"], "value": {"selected": side}}
        ]
        if n == 1:
            result = [{"type": "choices", "from_name": "problem", "value": {"choices": ["flag"]}}]
        t["annotations"] = [{"id": 100 + n, "completed_by": 7, "result": result, "was_cancelled": n == 2}]
    labelled = tmp_path / "export.json"
    labelled.write_text(json.dumps(tasks))
    with Workspace(db) as ws:
        assert import_labels(ws, labelled) == {"labels": 9, "new": 9, "already_stored": 0}
        assert import_labels(ws, labelled) == {"labels": 9, "new": 0, "already_stored": 9}  # twice adds nothing
        rows = list_labels(ws)
        (pref,) = human_preference(ws)
    assert len(rows) == 9 and {r["annotator"] for r in rows} == {"7"}
    assert pref["flags"] == 1 and pref["judged"] == 8 and pref["win_rate"] == 1.0  # every judged label: persona


def test_csv_round_trip_through_the_cli(db, tmp_path):
    out = tmp_path / "pairs.csv"
    run = CliRunner().invoke(cli, ["labels", "export", "--format", "csv", "--out", str(out), "--db", str(db)])
    assert run.exit_code == 0, run.output
    assert "pairs: 10" in run.output
    rows = list(csv.DictReader(out.open()))
    with Workspace(db, read_only=True) as ws:
        pairs = {pair_key(p): p for p in label_pairs(ws)}
    for r in rows:  # pick the baseline every time
        r["choice"] = "b" if pairs[r["pair_key"]].system_side == "a" else "a"
    rows[0]["choice"] = ""  # not labelled yet: skipped
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    args = ["labels", "import", str(out), "--annotator", "ana", "--db", str(db), "--json"]
    first = json.loads(CliRunner().invoke(cli, args).stdout)
    again = json.loads(CliRunner().invoke(cli, args).stdout)
    assert first == {"labels": 9, "new": 9, "already_stored": 0} and again["new"] == 0
    report = CliRunner().invoke(cli, ["labels", "report", "--db", str(db), "--json"]).stdout
    assert json.loads(report)[0]["win_rate"] == 0.0


def test_bad_files_are_refused_naming_the_line_and_store_nothing(db, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("pair_key,choice\nnot-a-pair,a\n")
    other = tmp_path / "typo.csv"
    other.write_text("pair_key,choice\nx,left\n")
    with Workspace(db) as ws:
        with pytest.raises(DataError, match=r"bad.csv:2: field 'pair_key': pair 'not-a-pair' is not in this"):
            import_labels(ws, bad)
        with pytest.raises(DataError, match=r"typo.csv:2: field 'choice': expected one of a, b, flag"):
            import_labels(ws, other)
        assert list_labels(ws) == []
    with Workspace(tmp_path / "empty.duckdb") as ws:
        with pytest.raises(DataError, match="no persona-vs-baseline image pairs"):
            export_tasks(ws, "csv", tmp_path / "x.csv")
