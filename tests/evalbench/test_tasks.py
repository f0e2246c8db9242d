"""Benchmark tasks: YAML specs, the multi-system runner, reports, reproducibility and resuming after kills."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evalbench.metrics import MetricListError
from evalbench.task_render import render_html, render_markdown
from evalbench.task_report import compare_runs, group_key, task_report
from evalbench.task_spec import load_task, parse_task, run_task
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parents[2]


def scores_only(rep: dict) -> str:
    """The report without what is measured rather than scored (wall-clock cost, code version)."""
    rep = {
        **rep,
        "code_version": None,
        "systems": [{k: v for k, v in s.items() if k != "cost"} for s in rep["systems"]],
    }
    return json.dumps(rep, sort_keys=True, default=str)


def test_task_specs_are_checked():
    t = load_task("movielens_text")
    assert len(t.systems) >= 4 and t.baseline == "no persona" and t.bias["targets"] == "us_census_2020"
    with pytest.raises(ValueError, match="did you mean 'movielens_text'"):
        load_task("movielens_txt")
    base = {
        "task": "t",
        "version": 1,
        "dataset": {"source": "synthetic"},
        "systems": [{"name": "a", "encoder": "tfidf"}],
    }
    with pytest.raises(ValueError, match="missing required key 'version'"):
        parse_task({k: v for k, v in base.items() if k != "version"})
    with pytest.raises(ValueError, match="unknown key"):
        parse_task({**base, "sytems": []})
    with pytest.raises(ValueError, match=r"systems\[0\] has unknown key"):
        parse_task({**base, "systems": [{"name": "a", "encoder": "tfidf", "shots": 3}]})
    with pytest.raises(ValueError, match="unique"):
        parse_task({**base, "systems": [{"name": "a", "encoder": "tfidf"}, {"name": "a", "encoder": "sage"}]})
    with pytest.raises(ValueError, match="dataset.source"):
        parse_task({**base, "dataset": {"source": "imagenet"}})


def test_metric_list_entries_are_checked_and_name_their_field():
    base = {
        "task": "t",
        "version": 1,
        "dataset": {"source": "synthetic"},
        "systems": [{"name": "a", "encoder": "tfidf"}],
    }
    with pytest.raises(
        MetricListError,
        match=r"metric_list\[0\]\.name: unknown metric 'text_preferense'; "
        r"did you mean 'text_preference'\?",
    ) as e:
        parse_task({**base, "metric_list": [{"name": "text_preferense"}]})
    assert e.value.field == "metric_list[0].name"
    bad = [
        ([{"name": "text_preference"}, {"name": "cmmd"}], "metric_list[1].name", "does not score text"),
        ([{"name": "text_preference", "aggregation": "median"}], "metric_list[0].aggregation", "aggregates by mean"),
        (
            [{"name": "text_preference", "higher_is_better": False}],
            "metric_list[0].higher_is_better",
            "higher-is-better",
        ),
        ([{"name": "text_preference", "weight": 2}], "metric_list[0]", "unknown key"),
        ([{"name": "rewrite_spread"}], "metric_list", "no text_preference"),
        ([{"name": "text_preference"}, {"name": "text_preference"}], "metric_list", "twice"),
        ("text_preference", "metric_list", "must be a list"),
    ]
    for entries, where, what in bad:
        with pytest.raises(MetricListError, match=what) as e:
            parse_task({**base, "metric_list": entries})
        assert e.value.field == where
    with pytest.raises(MetricListError, match="image tasks score"):
        parse_task({**base, "kind": "image", "baseline": "a", "metric_list": [{"name": "text_preference"}]})
    # without metric_list a text task scores text_preference alone; written out, the same task (the same id)
    spelled = parse_task(
        {**base, "metric_list": [{"name": "text_preference", "aggregation": "mean", "higher_is_better": True}]}
    )
    assert spelled.config() == parse_task(base).config() and parse_task(base).config()["metrics"] == ["text_preference"]
    two = parse_task(
        {**base, "metric_list": [{"name": "text_preference"}, {"name": "rewrite_spread", "aggregation": "median"}]}
    )
    assert [m.name for m in two.more_metrics] == ["rewrite_spread"]
    assert two.config()["metrics"][1] == {"name": "rewrite_spread", "aggregation": "median", "higher_is_better": True}


def test_a_task_listing_two_metrics_scores_both(tmp_path):
    """metric_list drives the runner: both metrics are scored per unit, computed by their classes, stored
    with the run (metric and encoder as data) and reported beside the personal win rate."""
    from evalbench.metrics.preference import RewriteSpread, TextPreference
    from evalbench.runner import unit_table
    from workbench.store.runs import metric_results

    spec = parse_task(
        {
            "task": "two_metrics",
            "version": 1,
            "dataset": {"source": "synthetic", "n_users": 120, "n_items": 100},
            "prompts": "parti6",
            "controls": False,
            "systems": [{"name": "tfidf+template", "encoder": "tfidf"}],
            "metric_list": [{"name": "text_preference"}, {"name": "rewrite_spread", "aggregation": "mean"}],
        }
    )
    with Workspace(tmp_path / "m.duckdb") as ws:
        rep = task_report(ws, run_task(ws, spec)["run_id"])
        system = next(s for s in rep["systems"] if s["name"] == "tfidf+template")
        stored = metric_results(ws, system["run_id"])
        t = unit_table(ws, system["run_id"], "rewrite_spread[minilm]", RewriteSpread.fields)
        pref = unit_table(ws, system["run_id"], "text_preference[minilm]")
    assert [(r["metric"], r["encoder"], r["aggregation"]) for r in stored] == [
        ("text_preference", "minilm", "mean"),
        ("rewrite_spread", "minilm", "mean"),
    ]
    assert t["unit"].size == pref["unit"].size > 0 and np.all((t["spread"] > 0) & (t["spread"] <= 2))
    # the stored results are the metric classes' compute() over the stored units
    m = RewriteSpread("minilm")
    m.update(t["spread"], t["user"])
    assert stored[1]["result"] == m.compute(seed=spec.seed)
    p = TextPreference("minilm")
    p.update(
        pref["lift"],
        pref["user"],
        personal=pref["personal"],
        personal_margin=pref["personal_margin"],
        personal_dislikes=pref["personal_dislikes"],
    )
    assert (
        stored[0]["result"]["personal_win_rate"]
        == system["personal_win_rate"]
        == p.compute(seed=0)["personal_win_rate"]
    )
    spread = system["metrics"]["rewrite_spread[minilm]"]
    assert spread["value"] == stored[1]["result"]["value"] and spread["higher_is_better"] is True
    popular = next(s for s in rep["systems"] if s["reference"] == "popularity")
    assert popular["metrics"]["rewrite_spread[minilm]"]["value"] == pytest.approx(0, abs=1e-5)  # the same for everyone
    ceiling = next(s for s in rep["systems"] if s["reference"] == "history")
    assert "metrics" not in ceiling  # no rewrites to spread
    assert "## Further metrics" in render_markdown(rep) and "rewrite_spread[minilm]" in render_html(rep)


def assert_close(a, b, path="report"):
    """Equal structure and strings; numbers equal to 1e-6 (relative or absolute)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6, nan_ok=True), path
    else:
        assert a == b, path


def _targets(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text(
        "source: {title: 'illustrative test population', publisher: tests, table: none, url: 'file://tests', year: 2026}\n"
        "marginals:\n  gender: {female: 0.65, male: 0.3, non-binary: 0.05}\n"
    )
    return path


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("task")
    spec = load_task("synthetic_recovery")
    spec.bias = {"attributes": ["gender", "age_group"], "targets": str(_targets(tmp))}
    with Workspace(tmp / "w.duckdb") as ws:
        res = run_task(ws, spec)
        rep = task_report(ws, res["run_id"])
    return tmp, spec, res, rep


def test_task_compares_systems_with_cis_groups_and_ipf(task_run):
    tmp, spec, res, rep = task_run
    names = {s["name"]: s for s in rep["systems"]}
    expected = {s.name for s in spec.systems} | {f"{s.name} (shuffled control)" for s in spec.systems}
    assert set(names) == expected | {"history ceiling", "popularity control"}
    assert rep["baseline"]["name"] == "no persona"
    assert [s["reference"] for s in rep["systems"]][0] == "history"  # the ceiling leads the table
    for s in rep["systems"]:
        lo, hi = s["personal_ci"]
        assert lo <= s["personal_win_rate"] <= hi
        if s["reference"] == "history":
            continue
        lo, hi = s["win_rate_ci"]
        assert lo <= s["win_rate"] <= hi and 0 <= s["wilcoxon_p"] <= 1
        o = s["bias"]["overall"]
        assert o["raw_mean"] == pytest.approx(s["personal_win_rate"])  # per-group scores are personal win rates
        assert o["reweighted_mean"] == o["reweighted_mean"] and o["delta_pct"] == o["delta_pct"]  # not nan
    # planted personas carry signal: the persona beats other users' personas, its shuffled control does not
    own, ctl = names["tfidf+template"], names["tfidf+template (shuffled control)"]
    assert own["personal_ci"][0] > 0.5 and own["personal_wilcoxon_p"] < 0.05
    assert ctl["personal_ci"][0] < 0.5 < ctl["personal_ci"][1] + 0.05
    assert names["popularity control"]["personal_win_rate"] == 0.5
    share = (own["personal_win_rate"] - 0.5) / (names["history ceiling"]["personal_win_rate"] - 0.5)
    assert own["ceiling_share"] == pytest.approx(share)
    g = rep["groups"]["tfidf+template [minilm]"]["gender"]
    assert set(g["groups"]) == {"female", "male", "non-binary"} and g["raked"] and g["gap"] >= 0


def test_the_json_report_names_the_personal_win_rate_per_system(task_run):
    _, _, _, rep = task_run
    text = json.loads(json.dumps(rep, default=str))
    for s in text["systems"]:
        assert isinstance(s["personal_win_rate"], float) and len(s["personal_ci"]) == 2


def test_same_seed_reproduces_the_report_exactly(task_run, tmp_path):
    _, spec, _, rep = task_run
    with Workspace(tmp_path / "again.duckdb") as ws:
        again = task_report(ws, run_task(ws, spec)["run_id"])
    assert scores_only(again) == scores_only(rep)


def test_reports_render_and_runs_compare(task_run, tmp_path):
    tmp, _, res, rep = task_run
    html = render_html(rep)
    assert html.count("data:image/png;base64,") >= 3 and "tfidf+template" in html
    md = render_markdown(rep, tmp_path / "plots")
    assert "| no persona (baseline) |" in md and (tmp_path / "plots" / "groups_gender.png").exists()
    assert (tmp_path / "plots" / "personal_minilm.png").exists()
    header = next(line for line in md.splitlines() if line.startswith("| system"))
    assert [c.strip() for c in header.split("|")[2:4]] == ["prompts", "personal"]  # the personal win rate leads
    with Workspace(tmp / "w.duckdb", read_only=True) as ws:
        ids = {s["name"]: s["run_id"] for s in rep["systems"]}
        cmp = compare_runs(ws, ids["tfidf+template"], ids["tfidf+template (shuffled control)"])
    n_units = next(s["n_units"] for s in rep["systems"] if s["name"] == "tfidf+template")
    assert cmp["win_rate"] > 0.5 and cmp["units"] == n_units


def _task_cmd(db):
    return [sys.executable, "-m", "apps.cli", "bench", "run", "synthetic_recovery", "--db", str(db), "--json"]


@pytest.mark.slow
def test_task_killed_five_times_resumes_to_a_clean_runs_report(tmp_path):
    """SIGKILL the task at random points (mining, rewriting, scoring) at least five times, then let it
    finish: the report equals an uninterrupted run's."""
    killed, clean = tmp_path / "killed.duckdb", tmp_path / "clean.duckdb"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(7)
    kills = 0
    for _attempt in range(12):
        proc = subprocess.Popen(
            _task_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
        )
        time.sleep(rng.uniform(2.0, 9.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        if kills >= 5:
            break
    assert kills >= 5, "the task finished before it could be killed five times"
    a = subprocess.run(_task_cmd(killed), capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    b = subprocess.run(_task_cmd(clean), capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-1500:], b.stderr[-1500:])
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    # a resumed run embeds texts in other batches, which moves MiniLM's floats by ~1e-8; everything else equal
    assert_close(json.loads(scores_only(ra)), json.loads(scores_only(rb)))
    with Workspace(killed, read_only=True) as ws:
        # nothing doubled: one row per (run, unit, metric)
        assert (
            ws.scalar(
                "SELECT count(*) FROM (SELECT run_id, unit_id, metric, count(*) c FROM scores "
                "GROUP BY ALL HAVING c > 1)"
            )
            == 0
        )


def test_encoders_by_name(tmp_path):
    """clip:<path> (a tiny random CLIP saved here), and the embedded stand-ins by name."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPConfig, CLIPModel

    from generation.random_weights import byte_level_clip_tokenizer
    from workbench.encoders import load_encoder
    from workbench.encoders.image import _clip_processor_class

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(tmp_path / "tiny-clip")
    byte_level_clip_tokenizer().save_pretrained(tmp_path / "tiny-clip")
    _clip_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "tiny-clip"
    )
    clip = load_encoder(f"clip:{tmp_path / 'tiny-clip'}")
    t = clip.encode_text(["a red bicycle", "a lighthouse"])
    im = clip.encode_image([Image.new("RGB", (40, 40), "red"), np.zeros((20, 30, 3), np.uint8)])
    assert t.shape == (2, 16) and im.shape == (2, 16) and clip.label == "clip-tiny-clip"
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    # prompt alignment (CLIPScore) with the CLIP, against a numpy reference; stand-ins are refused
    from evalbench.metrics.fidelity import PromptAlignment

    pa = PromptAlignment(f"clip:{tmp_path / 'tiny-clip'}")
    imgs = [Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")]
    pa.update(["a red square", "a blue square"], imgs)
    tt, ii = clip.encode_text(["a red square", "a blue square"]), clip.encode_image(imgs)
    assert pa.compute() == pytest.approx(np.mean(2.5 * np.maximum((tt * ii).sum(1), 0)), abs=1e-6)
    assert pa.name == "prompt_alignment[clip-tiny-clip]"
    with pytest.raises(ValueError, match="joint text-image encoder"):
        PromptAlignment("effnet-lite0")
    text = load_encoder("minilm")
    assert text.encode_text(["a cat"]).shape == (1, 384)
    with pytest.raises(ValueError, match="not images"):
        text.encode_image([Image.new("RGB", (8, 8))])
    with pytest.raises(ValueError, match="did you mean 'minilm'"):
        load_encoder("minilim")


FACES = ROOT.parent / "shared" / "data" / "london-faces"


@pytest.mark.skipif(
    not FACES.is_dir(), reason=f"real data folder {FACES} is absent (tests read it from ../shared/data)"
)
def test_face_ratings_image_task_on_real_ratings(tmp_path):
    """The image task end to end on the London faces: patch generations per held-out rater, scored against
    their hidden liked and disliked faces, each system paired with the popular-faces baseline."""
    spec = load_task("face_ratings_image", data_path=str(FACES))
    spec.image = {"max_users": 4, "variations": 2, "size": 64, "n_refs": 2}
    with Workspace(tmp_path / "f.duckdb") as ws:
        res = run_task(ws, spec)
        rep = task_report(ws, res["run_id"])
        again = run_task(ws, spec)  # resumes: nothing left to do, the same runs
    assert again["run_id"] == res["run_id"]
    assert rep["baseline"]["name"] == "popular faces" and rep["baseline"]["metric"] == "image_preference[effnet-lite0]"
    names = {s["name"] for s in rep["systems"]}
    assert names == {"own liked faces", "own liked faces (shuffled control)"}
    for s in rep["systems"]:
        assert s["win_rate_ci"][0] <= s["win_rate"] <= s["win_rate_ci"][1] and 0 <= s["copy_rate_32px"] <= 1
        assert set(rep["groups"][s["name"]]) == {"sex", "age"}
        # images from the rater's own references against the other raters' images, on the rater's own faces
        lo, hi = s["personal_ci"]
        assert lo <= s["personal_win_rate"] <= hi and 0 <= s["personal_wilcoxon_p"] <= 1
    assert rep["baseline"]["personal_win_rate"] == 0.5  # the popular faces are everyone's: the same images
    html = render_html(rep)
    assert "own liked faces" in html and "personal" in html


DREAMBENCH = ROOT.parent / "shared" / "data" / "dreambench"


@pytest.mark.skipif(
    not DREAMBENCH.is_dir(), reason=f"real data folder {DREAMBENCH} is absent (tests read it from ../shared/data)"
)
def test_dreambench_reference_task_separates_subjects(tmp_path):
    spec = load_task("dreambench_reference", data_path=str(DREAMBENCH))
    spec.image = {"variations": 2, "size": 64, "max_subjects": 6}
    with Workspace(tmp_path / "d.duckdb") as ws:
        rep = task_report(ws, run_task(ws, spec)["run_id"])
    assert rep["baseline"]["metric"] == "reference_alignment[effnet-lite0]" and rep["baseline"]["n_users"] == 6
    shuffled = next(s for s in rep["systems"] if "shuffled" in s["name"])
    # drawing from another subject's photo is less like the subject than drawing from its own photo
    assert shuffled["score"] < rep["baseline"]["score"] and shuffled["win_rate"] < 0.5
    assert set(rep["groups"][shuffled["name"]]) == {"class"}


def test_lift_vs_k_plot_appears_for_k_shot_systems(task_run):
    _, _, _, rep = task_run
    import copy

    rep = copy.deepcopy(rep)
    base = next(s for s in rep["systems"] if not s["reference"])
    rep["systems"] = [
        dict(
            base,
            name=f"gat+embedded k={k}",
            lift_x100=1.0 + k,
            lift_x100_ci=[k, 2.0 + k],
            shots={"k": k, "series": "gat+embedded"},
        )
        for k in (0, 3, 5)
    ]
    rep["groups"] = {}
    html = render_html(rep)
    assert 'alt="lift_vs_k"' in html and 'alt="cost"' in html


def test_the_fixed_seed_report_matches_the_golden_one(task_run, tmp_path):
    """The synthetic task's report (raw bias, seed 0) equals the one recorded before the layers refactor
    (tests/evalbench/golden/, written by the same code path): a refactor keeps every score."""
    _, spec, _, _ = task_run
    spec = load_task("synthetic_recovery")
    with Workspace(tmp_path / "golden.duckdb") as ws:
        rep = task_report(ws, run_task(ws, spec)["run_id"])
    golden = json.loads((Path(__file__).parent / "golden" / "synthetic_recovery_report.json").read_text())
    assert_close(json.loads(scores_only(rep)), golden)


def _cli(args):
    from click.testing import CliRunner

    from apps.cli import cli

    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    return res.exit_code, res.output


def test_every_task_report_counts_the_held_out_users_not_scored(task_run, tmp_path):
    tmp, _, res, rep = task_run
    with Workspace(tmp / "w.duckdb", read_only=True) as ws:
        heldout, no_likes = ws.query(
            "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM split_items i WHERE "
            "i.split_id = s.split_id AND i.user_id = s.user_id AND i.part = 'hidden' AND i.label = 'liked')) "
            "FROM split_users s WHERE s.split_id = ? AND s.role = 'heldout'",
            [rep["split"]],
        )[0]
    assert no_likes > 0  # the synthetic split holds out users whose hidden items are all dislikes
    for s in rep["systems"] + [rep["baseline"]]:
        assert (s["n_users_heldout"], s["n_users_dropped"], s["n_users"]) == (heldout, no_likes, heldout - no_likes)
        assert s["prompts"] == ("-" if s.get("reference") == "history" else rep["prompts"])
    line = f"{no_likes} of {heldout} held-out users not scored: no hidden liked items"
    assert rep["dropped_notes"] == [line]
    assert line in render_markdown(rep) and line in render_html(rep)
    code, out = _cli(["bench", "report", res["run_id"], "--db", str(tmp / "w.duckdb")])
    assert code == 0 and line in out
    code, out = _cli(["bench", "report", res["run_id"], "--format", "json", "--db", str(tmp / "w.duckdb")])
    assert json.loads(out)["systems"][0]["n_users_dropped"] == no_likes


def test_task_reports_bin_numeric_attributes_and_say_why_they_have_no_groups(task_run, tmp_path):
    import dataclasses
    import shutil

    from evalbench.groups import parse_bins

    tmp, spec, _, _ = task_run
    db = tmp_path / "w.duckdb"
    shutil.copy(tmp / "w.duckdb", db)
    with Workspace(db) as ws:  # a numeric attribute with many values, as a user's own table may bring
        ws.con.execute(
            "UPDATE users SET attributes = json_merge_patch(attributes, "
            "json_object('karma', CAST(substr(user_id, 2) AS INTEGER) * 13 % 97))"
        )
        karma_run = run_task(ws, dataclasses.replace(spec, bias={"attributes": ["gender", "karma"]}))["run_id"]
        rep = task_report(ws, karma_run)
        edges = task_report(ws, karma_run, bins=parse_bins(["karma=30,60"]))
        none_run = run_task(ws, dataclasses.replace(spec, bias={"attributes": ["occupation"]}))["run_id"]
        none = task_report(ws, none_run)
    system = next(s for s in rep["systems"] if s["name"] == "tfidf+template")
    karma = rep["groups"][group_key(system)]["karma"]["groups"]
    assert len(karma) == 4 and sum(g["n"] for g in karma.values()) == system["n_users"]
    lows = [int(g[1:].split(",")[0]) for g in karma]
    assert lows == sorted(lows) and list(karma)[-1].endswith("]")  # quartiles low to high, the last closed
    cut = list(edges["groups"][group_key(system)]["karma"]["groups"])
    assert cut == [g for g in ("<30", "[30, 60)", ">=60") if g in cut] and len(cut) == 3
    note = "no group breakdown: no user of dataset synthetic-s0 has a value for occupation (its users carry"
    assert none["groups_note"].startswith(note) and none["groups"] == {} and none["attributes"] == []
    assert note in render_markdown(none).split("## Per group")[1] and note in render_html(none)
    code, out = _cli(["bench", "report", none_run, "--db", str(db)])
    assert code == 0 and note in out
    code, out = _cli(["bench", "report", karma_run, "--bins", "gender=quantiles", "--db", str(db)])
    assert code == 1 and "--bins gender: attribute 'gender' is not numeric" in out
