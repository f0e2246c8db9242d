"""``pwb personalize``: users, cohorts, archetypes and new users end to end into one folder (manifest, images,
personas, run.json, contact sheet), every image signed; resumable after kills; clear errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("c2pa")
pytest.importorskip("skimage")

from apps.cli import cli  # noqa: E402

PROMPTS = "prompt_id\tprompt\np1\ta red bicycle\np2\ta lighthouse at dusk\n"
VOLATILE = ("sha256", "seconds")  # the signed file's own hash (signatures differ run to run) and timings


def _invoke(args, ok=True):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(f)]


def test_users_cohorts_archetypes_and_new_users_into_one_signed_folder(review_copy, tmp_path):
    from workbench.provenance import verify

    db, out = review_copy, tmp_path / "out"
    prompts = tmp_path / "p.tsv"
    prompts.write_text(PROMPTS)
    new = tmp_path / "new.csv"
    new.write_text("user_id,item_id\nnew-1,i0\nnew-1,i3\nnew-1,i7\n")
    args = ["personalize", "--db", str(db), "--users", "u0,u1", "--cohort", "women", "--where", "gender = 'female'"]
    args += ["--archetypes", "2", "--new-users", str(new), "--encoder", "sage[epochs=3]", "--prompts", str(prompts)]
    args += ["--images", "2", "--size", "48", "--baseline", "--out", str(out)]
    res = _invoke(args)
    assert "cohort:women" in res.stdout and "time per stage:" in res.stdout
    targets = ["u0", "u1", "cohort:women", "archetype:0", "archetype:1", "new-1"]
    rows = _manifest(out)
    assert len(rows) == len(targets) * 2 * 2 * 2  # targets x prompts x images x (persona, baseline)
    assert list(dict.fromkeys(r["target_id"] for r in rows)) == targets
    kinds = {r["target_id"]: r["target_kind"] for r in rows}
    assert kinds["cohort:women"] == "cohort" and kinds["archetype:1"] == "archetype" and kinds["new-1"] == "new-user"
    persona_rows = [r for r in rows if r["variant"] == "persona"]
    assert all(r["rewrite"] and r["persona_hash"] and r["selector_score"] != "" for r in persona_rows)
    assert all(r["rewrite"] == "" and r["persona_id"] == "" for r in rows if r["variant"] == "baseline")
    assert {r["seed"] for r in rows} == {"0", "1"} and {r["provenance"] for r in rows} == {"c2pa"}
    # every image is on disk, signed, and named by its row; the contact sheet shows each of them
    sheet = (out / "index.html").read_text()
    for r in rows:
        v = verify(out / r["image"])
        assert v["status"] == "marked" and v["assertion"]["generation_id"] == r["generation_id"]
        assert r["image"] in sheet
    assert all(f"id='{t}'" in sheet for t in targets)
    personas = [json.loads(line) for line in (out / "personas.jsonl").read_text().splitlines()]
    assert [p["target_id"] for p in personas] == targets and all("embedding" not in p for p in personas)
    women = next(p for p in personas if p["target_id"] == "cohort:women")
    assert women["members"] > 0 and women["definition"] == "gender = 'female'" and women["summary"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed" and run["images"] == len(rows) and run["drawn"] == len(rows)
    assert set(run["timings_s"]) >= {"personas", "rewrite", "draw", "save_and_sign", "write"}
    from workbench.store.files import parquet_rows

    parquet = [r for _, r in parquet_rows(out / "manifest.parquet", ["target_id"])]
    assert [r["generation_id"] for r in parquet] == [r["generation_id"] for r in rows]
    # a rerun draws nothing and writes the same manifest
    again = json.loads(_invoke([*args, "--json"]).stdout)
    assert again["drawn"] == 0 and again["reused"] == len(rows) and _manifest(out) == rows


def test_clear_errors_for_unknown_users_an_empty_cohort_and_an_unwritable_folder(review_copy, tmp_path):
    db = str(review_copy)
    prompts = tmp_path / "p.tsv"
    prompts.write_text(PROMPTS)
    base = ["personalize", "--db", db, "--prompts", str(prompts), "--size", "48", "--out", str(tmp_path / "o")]
    res = _invoke([*base, "--users", "u0,nobody,ghost"], ok=False)
    assert res.exit_code == 1 and "nobody, ghost" in res.output and "users:" in res.output
    res = _invoke([*base, "--cohort", "none", "--where", "gender = 'X'"], ok=False)
    assert res.exit_code == 1 and "no users match" in res.output and "'none'" in res.output
    res = _invoke([*base, "--cohort", "a", "--cohort", "b", "--where", "gender = 'female'"], ok=False)
    assert res.exit_code == 2 and "one --where per --cohort" in res.output
    res = _invoke([*base, "--cohort", "never-defined"], ok=False)
    assert res.exit_code == 1 and "no stored cohort 'never-defined'" in res.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = _invoke([*base[:-1], str(blocker / "out"), "--users", "u0"], ok=False)
    assert res.exit_code == 1 and str(blocker) in res.output
    assert not (tmp_path / "o").exists()  # nothing written by the refused runs


def _journal_lines(out: Path) -> int:
    p = out / ".journal.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_killed_twice_part_way_the_rerun_gives_the_clean_runs_manifest(review_copy, tmp_path):
    db = str(review_copy)
    prompts = tmp_path / "p.tsv"
    prompts.write_text(PROMPTS)
    common = ["--db", db, "--users", "u0,u1,u2,u3", "--prompts", str(prompts), "--images", "3", "--size", "64"]
    common += ["--baseline"]
    total = 4 * 2 * 3 * 2
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "apps.cli", "personalize", *common, "--out", str(killed)]
    env = {**os.environ, "PWB_PROGRESS_INTERVAL": "3600"}
    for stop_at in (5, 20):  # SIGKILL once the journal holds this many images
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while _journal_lines(killed) < stop_at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert stop_at <= _journal_lines(killed) < total, "the run finished before it could be killed"
        assert not (killed / "manifest.csv").exists()
    res = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    resumed = json.loads(res.stdout)
    assert resumed["drawn"] <= total - 20 and resumed["drawn"] + resumed["reused"] == total
    clean = tmp_path / "clean"
    _invoke(["personalize", *common, "--out", str(clean)])
    assert _manifest(killed) == _manifest(clean) and len(_manifest(clean)) == total
    files = sorted(p.name for p in (killed / "images").rglob("*.png"))
    assert files == sorted(p.name for p in (clean / "images").rglob("*.png")) and len(files) == total
    from evalbench.flows.personalize import read_journal

    assert len(read_journal(killed)) == total  # each image journalled once: none doubled


def test_the_diffusers_generator_with_random_weights_and_guidance(review_copy, tmp_path):
    """``--generator diffusers --model random:sd15-tiny``: the same folder, drawn by our diffusers loop."""
    pytest.importorskip("diffusers")
    prompts = tmp_path / "bicycle.txt"  # a set of its own: the fixture already stores another set "p"
    prompts.write_text("a red bicycle\n")
    out = tmp_path / "out"
    args = ["personalize", "--db", str(review_copy), "--users", "u0", "--prompts", str(prompts)]
    args += ["--generator", "diffusers", "--model", "random:sd15-tiny", "--size", "32", "--steps", "2"]
    args += ["--guidance", "interval", "--guidance-scale", "3", "--out", str(out)]
    _invoke(args)
    (row,) = _manifest(out)
    assert row["generator"] == "diffusers" and row["model"] == "random:sd15-tiny" and row["guidance"] == "interval"
    assert row["guidance_scale"] == "3.0" and row["height"] == "32" and row["provenance"] == "c2pa"
    res = _invoke([*args[:-2], "--out", str(tmp_path / "o2"), "--model", ""], ok=False)
    assert res.exit_code == 1 and "model:" in res.output
