"""Benchmark runs: scores, resume, the shuffled control, and a real process kill mid-run."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from evalbench.runner import BenchConfig, run_bench
from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.mining import mine_personas
from prompting.rewriter import rewrite_split
from workbench.store import Workspace, WorkspaceError
from workbench.store.datasets import write_dataset


def prepare(path, n_users=200, prompts="parti36"):
    with Workspace(path) as ws:
        write_dataset(ws, generate_community(n_users, 300, seed=5))
        split = make_split(ws, "synthetic-s5", SplitParams(seed=0))["split"]
        mine_personas(ws, split)
        rewrite_split(ws, split, prompts=prompts)
    return split


def scores(path):
    with Workspace(path, read_only=True) as ws:
        return ws.query("SELECT run_id, unit_id, metric, value, model FROM scores ORDER BY run_id, unit_id, metric")


@pytest.fixture(scope="module")
def bench_ws(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "w.duckdb"
    prepare(path, n_users=120)
    return path


def test_run_scores_every_unit_and_rerun_adds_nothing(bench_ws):
    with Workspace(bench_ws) as ws:
        out = run_bench(ws, BenchConfig())
        assert out["status"] == "completed" and not out["resumed"]
        n_users = ws.scalar("SELECT count(*) FROM split_users WHERE role = 'heldout'")
        assert ws.scalar("SELECT count(*) FROM run_units WHERE run_id = ?", [out["run_id"]]) == n_users * 36
        metrics = {r[0] for r in ws.query("SELECT DISTINCT metric FROM scores")}
        assert metrics == {
            f"text_preference[minilm].{m}"
            for m in ("generic", "rewritten", "lift", "win", "personal", "personal_margin", "personal_dislikes")
        }
        model = ws.scalar("SELECT DISTINCT model FROM scores")
        assert "MiniLM" in model and "embedded" in model  # the stand-in encoder is named
        lift_ok = ws.scalar("""SELECT max(abs(l.value - (r.value - g.value))) FROM scores l
            JOIN scores r ON r.unit_id = l.unit_id AND r.metric LIKE '%.rewritten'
            JOIN scores g ON g.unit_id = l.unit_id AND g.metric LIKE '%.generic' WHERE l.metric LIKE '%.lift'""")
        assert lift_ok < 1e-6  # float32 embeddings
        before = ws.scalar("SELECT count(*) FROM scores")
        again = run_bench(ws, BenchConfig())
        assert again["run_id"] == out["run_id"] and again["resumed"]
        assert ws.scalar("SELECT count(*) FROM scores") == before
        run = ws.query_dicts(
            "SELECT status, config_hash, code_version, ended_at FROM runs WHERE run_id = ?", [out["run_id"]]
        )[0]
        assert (
            run["status"] == "completed" and len(run["config_hash"]) == 64 and run["code_version"] and run["ended_at"]
        )


def test_shuffled_control_uses_other_users_rewrites(bench_ws):
    with Workspace(bench_ws) as ws:
        own = run_bench(ws, BenchConfig())["run_id"]
        ctl = run_bench(ws, BenchConfig(control="shuffled"))["run_id"]
        assert ctl != own
        q = "SELECT unit_id, value FROM scores WHERE run_id = ? AND metric LIKE '%.{}' ORDER BY unit_id"
        g_own, g_ctl = ws.query(q.format("generic"), [own]), ws.query(q.format("generic"), [ctl])
        assert [u for u, _ in g_own] == [u for u, _ in g_ctl]
        np.testing.assert_allclose([v for _, v in g_own], [v for _, v in g_ctl], atol=1e-6)  # same generic prompt
        r_own, r_ctl = ws.query(q.format("rewritten"), [own]), ws.query(q.format("rewritten"), [ctl])
        assert np.mean(np.isclose([v for _, v in r_own], [v for _, v in r_ctl], atol=1e-7)) < 0.5


def test_missing_rewrites_say_which_command(bench_ws):
    with Workspace(bench_ws) as ws:
        with pytest.raises(WorkspaceError, match="run `pwb rewrite --split .* --encoder tfidf --backend template"):
            run_bench(ws, BenchConfig(prompts=str(write_prompts(bench_ws.parent))))
    with pytest.raises(ValueError, match="control must be one of none, shuffled"):
        BenchConfig(control="random")


def write_prompts(folder):
    p = folder / "mine.tsv"
    p.write_text("prompt_id\tprompt\nx1\ta red bicycle\n")
    return p


def _bench_cmd(db):
    return [sys.executable, "-m", "apps.cli", "bench", "run", "--db", str(db)]


@pytest.mark.slow
def test_killed_bench_run_resumes_to_the_same_scores(tmp_path):
    killed, clean = tmp_path / "killed.duckdb", tmp_path / "clean.duckdb"
    prepare(killed, n_users=700)
    shutil.copy(killed, clean)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PWB_PROGRESS_INTERVAL": "0.2"}  # a progress line each 0.2 s

    # 1. Start a run and SIGKILL it once it has written some units but not all.
    proc = subprocess.Popen(_bench_cmd(killed), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    os.set_blocking(proc.stderr.fileno(), False)
    buf, done, total, deadline = b"", 0, 0, time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        chunk = proc.stderr.read() or b""
        buf += chunk
        found = re.findall(rb"(\d+)/(\d+) \[", buf)
        if found:
            done, total = map(int, found[-1])
            if 0.2 * total <= done < 0.7 * total:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 0 < done < total

    with Workspace(killed, read_only=True) as ws:
        status = ws.scalar("SELECT status FROM runs")
        partial = ws.scalar("SELECT count(*) FROM run_units")
    assert status == "running" and 0 < partial < total

    # 2. Re-run: it resumes and completes; 3. an uninterrupted run of the same config elsewhere.
    for db in (killed, clean):
        out = subprocess.run(_bench_cmd(db) + ["--json"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]

    a, b = scores(killed), scores(clean)
    assert [r[:3] for r in a] == [r[:3] for r in b]  # same units and metrics, nothing doubled or lost
    with Workspace(clean, read_only=True) as ws:
        scored = ws.scalar("SELECT count(*) FROM run_units WHERE status = 'scored'")
    assert len(a) == len(set(r[:3] for r in a)) > scored * 6 > 0  # 6 metrics a unit, 7 with hidden dislikes
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], rtol=0, atol=1e-6)
    assert [r[3] for r in a if r[2].endswith(".win")] == [r[3] for r in b if r[2].endswith(".win")]
    with Workspace(killed, read_only=True) as ws:
        assert ws.scalar("SELECT status FROM runs") == "completed"
        assert ws.scalar("SELECT count(*) FROM run_units") == total


def test_system_name_carries_the_shot_count_candidates_and_the_control():
    from evalbench.runner import BenchConfig

    cfg = BenchConfig(encoder="gat", backend="embedded", control="shuffled")
    assert cfg.system_for("SmolLM2|rewrite_v2|guard2|k3") == "gat+embedded k=3 (shuffled control)"
    assert cfg.system_for("SmolLM2|rewrite_v2|guard2|k3|n8") == "gat+embedded k=3 N=8 (shuffled control)"
    assert cfg.system_for("SmolLM2|rewrite_v2|guard2") == cfg.system == "gat+embedded (shuffled control)"
    assert BenchConfig(reference="history").system == "history ceiling"
    with pytest.raises(ValueError, match="reference must be one of history, popularity"):
        BenchConfig(reference="ceiling")
    with pytest.raises(ValueError, match="partners must be 0"):
        BenchConfig(partners=-1)


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_executors_give_the_local_scores(tmp_path, executor):
    """A local worker pool and a local Ray cluster produce exactly the in-process scores."""
    if executor == "ray":
        pytest.importorskip("ray")
    local, other = tmp_path / "local.duckdb", tmp_path / "other.duckdb"
    prepare(local, n_users=80, prompts="parti6")
    shutil.copy(local, other)
    with Workspace(local) as ws:
        run_bench(ws, BenchConfig(prompts="parti6"))
    with Workspace(other) as ws:
        out = run_bench(ws, BenchConfig(prompts="parti6"), executor=executor, workers=2, chunk_users=3)
    assert out["status"] == "completed"
    a, b = scores(local), scores(other)
    assert len(a) == len(b) > 0
    assert [r[:3] for r in a] == [r[:3] for r in b]
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], rtol=0, atol=1e-6)


def _pref(q, liked, negatives):
    return q @ liked.mean(0) - q @ negatives.mean(0)


def test_personal_win_rate_matches_an_independent_computation(bench_ws):
    """The stored personal win of a unit equals the share of other held-out users whose rewrite of the same
    prompt the user's own rewrite beats, recomputed here with numpy from the stored rewrites and hidden items."""
    from workbench.encoders.text import load_text_encoder
    from workbench.store.datasets import load_items
    from workbench.store.splits import hidden_targets

    enc = load_text_encoder("minilm")
    with Workspace(bench_ws) as ws:
        run_id = run_bench(ws, BenchConfig())["run_id"]
        split = ws.scalar("SELECT min(split_id) FROM splits")
        users = [
            r[0]
            for r in ws.query(
                "SELECT user_id FROM split_users WHERE split_id = ? AND role = 'heldout' ORDER BY user_id", [split]
            )
        ]
        items = load_items(ws, "synthetic-s5")
        targets = hidden_targets(ws, split, users)
        pid = ws.scalar("SELECT min(prompt_id) FROM rewrites")
        texts = dict(ws.query("SELECT user_id, rewritten FROM rewrites WHERE prompt_id = ?", [pid]))
        stored = dict(
            ws.query(
                "SELECT split_part(unit_id, '|', 1), value FROM scores WHERE run_id = ? AND "
                "metric = 'text_preference[minilm].personal' AND unit_id LIKE ?",
                [run_id, f"%|{pid}"],
            )
        )
    e = enc.encode([texts[u] for u in users])
    checked = 0
    for k, u in enumerate(users[:12]):
        t = targets.get(u, {})
        if not t.get("liked") or not t.get("unseen"):
            assert u not in stored
            continue
        le = enc.encode([items[i].text for i in t["liked"]])
        ne = enc.encode([items[i].text for i in t["unseen"]])
        pref = _pref(e, le, ne)
        others = np.delete(pref, k)
        want = np.mean(np.where(np.abs(pref[k] - others) <= 1e-9, 0.5, (pref[k] > others).astype(float)))
        assert stored[u] == pytest.approx(want, abs=1e-6)
        checked += 1
    assert checked >= 8


def test_references_and_controls_sit_where_they_must(bench_ws):
    """The popularity control writes the same text for everyone (personal exactly 0.5); the shuffled
    control is not personal; the history ceiling scores one unit per user; K partners are K."""
    from evalbench.leaderboard import leaderboard

    with Workspace(bench_ws) as ws:
        pop = run_bench(ws, BenchConfig(reference="popularity"))
        hist = run_bench(ws, BenchConfig(reference="history"))
        own = run_bench(ws, BenchConfig())
        ctl = run_bench(ws, BenchConfig(control="shuffled"))
        k5 = run_bench(ws, BenchConfig(partners=5))
        rows = {r["run_id"]: r for r in leaderboard(ws, [pop["run_id"], hist["run_id"], own["run_id"], ctl["run_id"]])}
        n_held = ws.scalar("SELECT count(*) FROM split_users WHERE role = 'heldout'")
        assert ws.scalar("SELECT count(*) FROM run_units WHERE run_id = ?", [hist["run_id"]]) == n_held
        assert (
            ws.scalar(
                "SELECT count(DISTINCT value) FROM scores WHERE run_id = ? AND metric LIKE '%.personal'",
                [pop["run_id"]],
            )
            == 1
        )
    assert pop["system"] == "popularity control" and hist["system"] == "history ceiling"
    assert rows[pop["run_id"]]["personal_win_rate"] == 0.5
    r_own, r_ctl, r_hist = rows[own["run_id"]], rows[ctl["run_id"]], rows[hist["run_id"]]
    # planted personas: the own rewrite is personal, the control is not
    assert r_own["personal_ci"][0] > 0.5 and abs(r_ctl["personal_win_rate"] - 0.5) < 0.1
    assert r_own["ceiling"] == r_hist["personal_win_rate"] and r_own["ceiling_share"] == pytest.approx(
        (r_own["personal_win_rate"] - 0.5) / (r_hist["personal_win_rate"] - 0.5)
    )
    ordered = [r["personal_win_rate"] for r in rows.values()]  # leaderboard order: personal win rate first
    assert ordered == sorted(ordered, reverse=True)
    assert k5["run_id"] != own["run_id"]


def test_partners_are_fixed_by_the_seed():
    from evalbench.runner import partners_of

    users = [f"u{i}" for i in range(20)]
    a, b = partners_of(users, 5, seed=3), partners_of(users, 5, seed=3)
    assert a == b and all(len(v) == 5 and u not in v for u, v in a.items())
    assert partners_of(users, 5, seed=4) != a
    every = partners_of(users, 0, seed=0, exclude={"u1": "u2"})
    assert len(every["u0"]) == 19 and "u2" not in every["u1"] and len(every["u1"]) == 18
