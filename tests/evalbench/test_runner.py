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
from evalbench.store import Workspace, WorkspaceError
from evalbench.store.datasets import write_dataset
from persona.data.splits import SplitParams, make_split
from persona.data.synthetic import generate_community
from persona.mining import mine_personas
from prompting.rewriter import rewrite_split


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
        assert metrics == {f"text_preference[minilm].{m}" for m in ("generic", "rewritten", "lift", "win")}
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
        run = ws.query_dicts("SELECT status, config_hash, code_version, ended_at FROM runs WHERE run_id = ?", [out["run_id"]])[0]
        assert run["status"] == "completed" and len(run["config_hash"]) == 64 and run["code_version"] and run["ended_at"]


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
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

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
    assert len(a) == len(set(r[:3] for r in a)) == scored * 4 > 0
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], rtol=0, atol=1e-6)
    assert [r[3] for r in a if r[2].endswith(".win")] == [r[3] for r in b if r[2].endswith(".win")]
    with Workspace(killed, read_only=True) as ws:
        assert ws.scalar("SELECT status FROM runs") == "completed"
        assert ws.scalar("SELECT count(*) FROM run_units") == total


def test_system_name_carries_the_shot_count_and_the_control():
    from evalbench.runner import BenchConfig

    cfg = BenchConfig(encoder="gat", backend="embedded", control="shuffled")
    assert cfg.system_for("SmolLM2|rewrite_v2|guard2|k3") == "gat+embedded k=3 (shuffled control)"
    assert cfg.system_for("SmolLM2|rewrite_v2|guard2") == cfg.system == "gat+embedded (shuffled control)"


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
