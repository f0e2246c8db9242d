"""Human labels: system/baseline pairing, blind sides, and the human-preference report."""

import math

import numpy as np
import pytest

from evalbench.labels import add_label, human_preference, label_pairs
from workbench.store.labels import list_labels
from workbench.store.workspace import Workspace


def _draw(ws, cid, user, prompt_id, persona_id, seed=0, backend="patch", model="patch:fast"):
    ws.con.execute(
        "INSERT INTO conditions (condition_id, user_id, prompt, seed, persona_id, prompt_id) VALUES (?, ?, ?, ?, ?, ?)",
        [cid, user, f"text {cid}", seed, persona_id, prompt_id],
    )
    ws.con.execute(
        "INSERT INTO generations (generation_id, condition_id, image_path, backend, model, user_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [f"g-{cid}", cid, f"images/{cid}.png", backend, model, user],
    )


@pytest.fixture
def ws(tmp_path):
    with Workspace(tmp_path / "w.duckdb") as w:
        for u in range(20):
            for p in ("p/p1", "p/p2"):
                _draw(w, f"s{u}{p[-1]}", f"u{u}", p, f"split/gat/u{u}")
                _draw(w, f"b{u}{p[-1]}", f"u{u}", p, None)
        _draw(w, "other-seed", "u0", "p/p1", None, seed=7)  # not a twin: another seed
        _draw(w, "other-model", "u0", "p/p1", None, model="random:sd15-tiny", backend="diffusers")
        yield w


def test_pairs_join_system_and_baseline_twins_with_blind_sides(ws):
    pairs = label_pairs(ws)
    assert len(pairs) == 40
    assert all(p.system_generation_id.replace("g-s", "") == p.baseline_generation_id.replace("g-b", "") for p in pairs)
    assert all(p.system == "gat -> patch:fast" for p in pairs)
    sides = [p.system_side for p in pairs]
    assert 10 <= sides.count("a") <= 30  # hashed, so roughly balanced
    for p in pairs:
        sys_img = p.a_image if p.system_side == "a" else p.b_image
        assert sys_img == f"images/{p.system_generation_id[2:]}.png"
    assert [p.user_id for p in label_pairs(ws, user_id="u3")] == ["u3", "u3"]
    assert label_pairs(ws, user_id="u3", prompt_id="p/p2")[0].prompt_id == "p/p2"


def test_human_preference_counts_the_system_side_not_the_position(ws):
    pairs = label_pairs(ws)
    rng = np.random.default_rng(0)
    prefer_system = rng.random(len(pairs)) < 0.7
    for k, (p, ps) in enumerate(zip(pairs, prefer_system)):
        other = "b" if p.system_side == "a" else "a"
        add_label(ws, p, "flag" if k % 10 == 9 else (p.system_side if ps else other), annotator="t")
    rows = human_preference(ws)
    assert len(rows) == 1
    r = rows[0]
    judged = [bool(ps) for k, ps in enumerate(prefer_system) if k % 10 != 9]
    wins = sum(judged)
    assert r["labels"] == 40 and r["flags"] == 4 and r["judged"] == 36 and r["prefer_system"] == wins
    # per-user means, then their mean (every user has 1-2 judged labels)
    per_user = {}
    for k, (p, ps) in enumerate(zip(pairs, prefer_system)):
        if k % 10 != 9:
            per_user.setdefault(p.user_id, []).append(float(ps))
    assert r["win_rate"] == pytest.approx(np.mean([np.mean(v) for v in per_user.values()]))
    assert r["ci_low"] <= r["win_rate"] <= r["ci_high"]
    n = 36  # two-sided exact binomial test against 1/2, by hand
    tail = sum(math.comb(n, i) for i in range(0, n + 1) if math.comb(n, i) <= math.comb(n, wins)) / 2**n
    assert r["sign_test_p"] == pytest.approx(min(1.0, tail))
    assert len(list_labels(ws)) == 40


def test_bad_choice_is_refused_and_nothing_is_stored(ws):
    with pytest.raises(ValueError, match="one of a, b, flag"):
        add_label(ws, label_pairs(ws)[0], "left")
    assert list_labels(ws) == [] and human_preference(ws) == []


def test_labels_report_command(ws):
    from click.testing import CliRunner

    from apps.cli import cli

    path = str(ws.path)
    pairs = label_pairs(ws)
    for p in pairs[:6]:
        add_label(ws, p, p.system_side)
    ws.close()
    out = CliRunner().invoke(cli, ["labels", "report", "--db", path])
    assert out.exit_code == 0, out.output
    assert "gat -> patch:fast" in out.output and "1.000" in out.output


def test_a_persona_image_with_other_references_or_guidance_is_not_a_twin(ws):
    ws.con.execute("UPDATE conditions SET reference_images = ['<image 1>'] WHERE condition_id = 's01'")
    ws.con.execute("UPDATE conditions SET guidance = '{\"rule\": \"apg\"}' WHERE condition_id = 's02'")
    users = [(p.user_id, p.prompt_id) for p in label_pairs(ws, user_id="u0")]
    assert users == []
