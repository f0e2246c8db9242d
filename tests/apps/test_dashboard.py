"""The review dashboard: its workspace queries (``apps.dashboard.data``) and every page under Streamlit's AppTest.

Pages run through the real router (``apps/dashboard/app.py``, switched with ``AppTest.switch_page``) on a
copy of the session's review workspace, so labels written here do not change other tests' counts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest  # noqa: E402

from apps.dashboard import cohort_data, data, label_data  # noqa: E402
from workbench.store.workspace import Workspace  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "apps" / "dashboard" / "app.py")
TIMEOUT = 60


def copy_workspace(review_db: Path, dest: Path) -> Path:
    """A private copy of the review workspace (image paths stay absolute, pointing at the original's files)."""
    shutil.copytree(review_db.parent, dest)
    return dest / review_db.name


@pytest.fixture(scope="module")
def dash_db(review_db, tmp_path_factory) -> Path:
    """A read-mostly copy shared by this module's page tests (no labels are written to it)."""
    return copy_workspace(review_db, tmp_path_factory.mktemp("dash") / "ws")


@pytest.fixture
def ro(dash_db):
    with Workspace(dash_db, read_only=True) as ws:
        yield ws


def app(monkeypatch, db: Path, annotator: str = "pytest") -> AppTest:
    """The router app pointed at ``db``, run once (the Overview page)."""
    monkeypatch.setenv("PWB_DB", str(db))
    monkeypatch.setenv("PWB_ANNOTATOR", annotator)
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Read the workspace on a connection closed again at once (the app's gate may open the file read-write)."""
    with Workspace(db, read_only=True) as ws:
        return ws.query(sql, params)


def frames(at: AppTest) -> list:
    return [df.value for df in at.dataframe]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# -- data.py ------------------------------------------------------------------------------------------------


def test_data_module_imports_neither_streamlit_nor_torch():
    code = (
        "import sys, apps.dashboard.data, apps.dashboard.cohort_data, apps.dashboard.label_data; "
        "print('streamlit' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(APP).parents[2]
    ).stdout.split()
    assert out == ["False", "False"]


def test_helpers(tmp_path, monkeypatch):
    assert sorted(["u10", "u2", "u1"], key=data.natural_key) == ["u1", "u2", "u10"]
    assert data.fnum(float("nan")) is None and data.fnum(0.12345) == 0.123 and data.fnum("x") is None
    assert data.fci(0.1, 0.25) == "[0.100, 0.250]" and data.fci(None, 0.2) == "-"
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "img.png").write_bytes(b"x")
    db = tmp_path / "ws" / "w.duckdb"
    assert data.resolve_image("img.png", db) == str(tmp_path / "ws" / "img.png")  # next to the workspace
    monkeypatch.chdir(tmp_path)
    assert data.resolve_image("ws/img.png", db) == str(tmp_path / "ws" / "img.png")  # then the cwd
    assert data.resolve_image(str(tmp_path / "ws" / "img.png")) == str(tmp_path / "ws" / "img.png")
    assert data.resolve_image("gone.png", db) is None and data.resolve_image(None) is None


def test_data_runs_and_leaderboards(ro):
    runs = data.runs_table(ro)
    # two reference rows, two systems and their shuffled controls, one task run
    assert set(runs["kind"]) == {"task", "bench"} and len(runs) == 7
    task = data.task_runs(ro)[0]["run_id"]
    assert task.startswith("task-") and task in set(runs["run"])
    board = data.task_leaderboard(ro, task)
    assert list(board.columns[:4]) == ["metric", "system", "prompts", "personal"]  # the personal win rate leads
    assert board["system"].iloc[0] == "history ceiling (no prompt)" and board["system"].iloc[-1].endswith("(baseline)")
    assert {"sage+template", "tfidf+template", "tfidf+template (shuffled control)", "popularity control"} <= set(
        board["system"]
    )
    bench = data.bench_leaderboard(ro)
    assert len(bench) == 6 and list(bench.columns[5:7]) == ["personal", "personal CI"]
    assert list(bench.columns[1:3]) == ["system", "prompts"] and set(bench["prompts"]) == {"-", "parti6"}
    assert list(bench["personal"]) == sorted(bench["personal"], reverse=True)
    assert all(ci.startswith("[") for ci in bench["personal CI"])
    assert data.human_preference_table(ro).empty


def test_data_cohorts(ro):
    options = cohort_data.run_options(ro)
    assert options[0]["kind"] == "task" and [o["kind"] for o in options[1:]] == ["bench"] * 6
    rep = cohort_data.cohort_report(ro, options[0]["run_id"])
    assert rep["kind"] == "task" and rep["attributes"] == ["gender", "age_group"] and not rep["has_ipf"]
    assert rep["value_label"] == "personal win rate"
    assert {"female", "male"} <= set(rep["groups"]["group"])
    g = rep["groups"]
    assert (g["ci_low"].isna() | (g["ci_low"] <= g["score"])).all() and g["ci_low"].notna().sum() > len(g) / 2
    # the systems, their controls and the popularity control (the history ceiling has no prompts to break down)
    assert set(rep["worst"]["attribute"]) == {"gender", "age_group"} and len(rep["overall"]) == 5
    bench = cohort_data.cohort_report(ro, next(o["run_id"] for o in options if "tfidf+template · " in o["label"]))
    assert bench["kind"] == "bench" and {"female", "male"} <= set(bench["groups"]["group"])
    assert len(bench["overall"]) == 1 and bench["overall"]["IPF-reweighted"].isna().all()
    with pytest.raises(Exception, match="No run"):
        cohort_data.cohort_report(ro, "bench-nope")


def test_data_personas(ro):
    sets = data.persona_sets(ro)
    assert {s["encoder"] for s in sets} == {"tfidf", "sage[epochs=3]"}
    s = next(s for s in sets if s["encoder"] == "tfidf")
    users = data.persona_users(ro, s["split_id"], "tfidf")
    assert users[:3] == ["u0", "u1", "u2"] and len(users) == s["users"]
    card = data.persona_detail(ro, s["split_id"], "tfidf", "u0")
    stored = ro.query(
        "SELECT rank, item_id, weight FROM persona_evidence WHERE encoder = 'tfidf' AND user_id = 'u0' ORDER BY rank"
    )
    assert [tuple(r) for r in card["evidence"][["rank", "item", "weight"]].itertuples(index=False)] == stored
    assert card["evidence"]["title"].notna().all() and not card["traits"].empty and card["summary"]
    assert {"p1", "p2"} <= set(card["rewrites"]["prompt id"])
    assert data.persona_detail(ro, s["split_id"], "tfidf", "nobody") is None


def test_data_pairs_and_labels(review_db, tmp_path):
    db = copy_workspace(review_db, tmp_path / "ws")
    with Workspace(db, read_only=True) as ws:
        assert label_data.pair_users(ws) == ["u0", "u102", "u113"]
        assert [p["prompt"] for p in label_data.pair_prompts(ws, "u0")] == ["a red bicycle", "a lighthouse at dusk"]
        pairs = label_data.pairs_for(ws)
        assert len(pairs) == 6 and all(p["a_path"] and p["b_path"] for p in pairs)
        assert label_data.labels_by_pair(ws) == {}
    pair = pairs[0]
    with Workspace(db) as ws:
        res = label_data.store_label(ws, pair["pair_id"], "b", annotator="unit")
        assert res["system_side"] == pair["system_side"] and res["system"] == pair["system"]
        with pytest.raises(Exception, match="No image pair"):
            label_data.store_label(ws, "g-x:g-y", "a")
    with Workspace(db, read_only=True) as ws:
        labels = label_data.labels_by_pair(ws, [pair["pair_id"]])
        assert labels[pair["pair_id"]][0]["annotator"] == "unit"
        assert labels[pair["pair_id"]][0]["verdict"] == ("persona" if pair["system_side"] == "b" else "baseline")
        assert data.human_preference_table(ws)["labels"].tolist() == [1]


def test_data_compare(ro):
    runs = data.bench_runs(ro)
    assert len(runs) == 5 and "history ceiling" not in {r["system"] for r in runs}
    res = data.comparison(ro, runs[0]["run_id"], runs[1]["run_id"])
    assert res["units"] > 0 and 0 <= res["win_rate"] <= 1 and res["n_clusters"] > 0
    with pytest.raises(ValueError):
        data.comparison(ro, runs[0]["run_id"], runs[0]["run_id"])


# -- pages ---------------------------------------------------------------------------------------------------


def test_overview_page(monkeypatch, dash_db):
    run_ids = {r[0] for r in query(dash_db, "SELECT run_id FROM runs")}
    at = app(monkeypatch, dash_db)
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Overview"]
    assert str(dash_db) in texts(at.sidebar.caption)
    runs, task_board, bench_board = frames(at)
    assert set(runs["run"]) == run_ids
    assert "sage+template" in set(task_board["system"]) and len(bench_board) == 6
    assert "No labels yet" in texts(at.info)


def test_cohorts_page(monkeypatch, dash_db):
    at = page(app(monkeypatch, dash_db), "cohorts")
    assert at.selectbox(key="cohorts_run").value.startswith("task-")
    overall, worst, groups = frames(at)
    assert len(overall) == 5 and {"gender", "age_group"} == set(worst["attribute"])
    assert {"female", "male", "non-binary"} == set(groups["group"]) and "CI" in groups
    assert at.get("vega_lite_chart"), "no per-group chart"
    assert "no population targets" in texts(at.caption)
    at.radio(key="cohorts_attribute").set_value("age_group").run()
    assert "25-34" in set(frames(at)[2]["group"])
    bench = [o.split(" · ")[0] for o in at.selectbox(key="cohorts_run").options if " · bench · " in o]
    assert len(bench) == 6
    at.selectbox(key="cohorts_run").set_value(bench[0]).run()
    assert not at.exception and len(frames(at)[0]) == 1


def test_personas_page(monkeypatch, dash_db):
    with Workspace(dash_db, read_only=True) as ws:
        sets = data.persona_sets(ws)
    at = page(app(monkeypatch, dash_db), "personas")
    at.text_input(key="personas_query").input("u0").run()
    assert not at.exception
    assert any("Persona of u0" in s.value for s in at.subheader)
    traits, evidence, rewrites = frames(at)
    encoder = sets[at.selectbox(key="personas_set").value]["encoder"]
    stored = query(
        dash_db,
        "SELECT item_id, snippet FROM persona_evidence WHERE encoder = ? AND user_id = 'u0' ORDER BY rank",
        [encoder],
    )
    assert list(zip(evidence["item"], evidence["snippet"])) == stored
    assert len(traits) > 0 and len(rewrites) > 0 and "rewritten" in rewrites
    at.text_input(key="personas_query").input("zz-nobody").run()
    assert "No user matching 'zz-nobody'" in texts(at.warning)


def test_generations_page_labels(monkeypatch, review_db, tmp_path):
    db = copy_workspace(review_db, tmp_path / "ws")
    at = page(app(monkeypatch, db, annotator="apptest"), "generations")
    assert at.selectbox(key="gen_user").value == "u0"
    images = at.image
    assert len(images) == 4 and [c for im in images for c in im.captions] == ["A", "B", "A", "B"]
    assert "a red bicycle" in texts(at.markdown) and "No labels yet for this pair." in texts(at.caption)
    with Workspace(db, read_only=True) as ws:
        pair = label_data.pairs_for(ws, "u0", "p/p1")[0]
    # blind: nothing on the page says where the persona image is before labelling
    assert "persona image was" not in texts(at.markdown) + texts(at.caption)
    at.button(key=f"prefer_a_{pair['pair_id']}").click().run()
    assert not at.exception, at.exception
    success = texts(at.success)
    assert "Label saved" in success and f"persona image was **{pair['system_side'].upper()}**" in success
    assert "1 label so far: A 1 · B 0 · flagged 0" in texts(at.caption)
    with Workspace(db, read_only=True) as ws:
        rows = ws.query("SELECT system_generation_id, choice, annotator, system_side FROM labels")
    assert rows == [(pair["system_generation_id"], "a", "apptest", pair["system_side"])]
    at.switch_page("views/overview.py").run()
    hp = frames(at)[-1]
    assert hp["labels"].tolist() == [1] and hp["judged"].tolist() == [1]
    at.switch_page("views/generations.py").run()
    at.toggle(key="gen_unlabelled").set_value(True).run()
    assert len(at.image) == 2  # the labelled pair is hidden


def test_compare_page(monkeypatch, dash_db):
    at = page(app(monkeypatch, dash_db), "compare")
    a, b = at.selectbox(key="compare_a").value, at.selectbox(key="compare_b").value
    assert a != b
    labels = [m.label for m in at.metric]
    assert "A wins (share of units)" in labels and "Wilcoxon p" in labels
    table = frames(at)[0]
    assert dict(zip(table["quantity"], table["value"]))["run A"] == a
    at.selectbox(key="compare_b").set_value(a).run()
    assert "Pick two different runs." in texts(at.info)


def test_missing_workspace(monkeypatch, tmp_path):
    missing = tmp_path / "none.duckdb"
    at = app(monkeypatch, missing)
    assert not at.exception
    msg = texts(at.error)
    assert str(missing) in msg and "pwb demo" in msg
    assert not missing.exists()


def test_empty_workspace(monkeypatch, tmp_path):
    db = tmp_path / "empty.duckdb"
    Workspace(db).close()
    at = app(monkeypatch, db)
    assert not at.exception and "No runs yet" in texts(at.info)
    expected = {
        "cohorts": "No bench or task runs yet",
        "personas": "No personas yet",
        "generations": "No generations with baselines yet",
        "compare": "Comparing needs two bench runs",
    }
    for name, message in expected.items():
        assert message in texts(page(at, name).info), name
