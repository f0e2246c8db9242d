"""``pwb personas mine`` budget options: what they accept, what the output says about training."""

import json
from pathlib import Path

from click.testing import CliRunner

from apps.cli import cli


def run(args, db, ok=True):
    res = CliRunner().invoke(cli, [*args, "--db", str(db)], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_mine_with_max_steps_says_how_far_training_went_and_keeps_a_checkpoint_beside_the_workspace(tmp_path):
    db = tmp_path / "w.duckdb"
    run(["data", "import", "synthetic", "--users", "80", "--items", "60", "--seed", "3"], db)
    run(["data", "split", "--seed", "0"], db)
    res = run(["personas", "mine", "--encoder", "gat", "--max-steps", "2", "-p", "batch_size=64", "--json"], db)
    out = json.loads(res.stdout)
    assert out["encoder"] == "gat[batch_size=64,max_steps=2]" and out["mined"] == 80
    assert out["training"].startswith("2 of 2 planned steps in")  # max_steps caps the plan itself
    ckpt = Path(out["checkpoint"])
    assert ckpt.exists() and ckpt.resolve().parent == (tmp_path / "models").resolve()  # models/ beside --db
    again = json.loads(
        run(
            ["personas", "mine", "--encoder", "gat", "--max-steps", "2", "-p", "batch_size=64", "--force", "--json"], db
        ).stdout
    )
    assert again["training"].startswith("2 of 2 planned steps in")  # --force retrains
    budget = run(["personas", "mine", "--encoder", "gat", "--time-budget", "0.001", "-p", "batch_size=64"], db)
    assert "encoder: gat[batch_size=64,time_budget=0.001]" in budget.stdout
    assert "(stopped by the time budget; --max-steps 1 repeats this model exactly)" in budget.stdout
    assert "steps planned, time budget" in budget.stderr and "steps of 64 liked edges" in budget.stderr


def test_budget_options_refused_for_tfidf_and_for_non_positive_values(tmp_path):
    db = tmp_path / "w.duckdb"
    run(["data", "import", "synthetic", "--users", "40", "--items", "30"], db)
    res = run(["personas", "mine", "--time-budget", "60"], db, ok=False)
    assert res.exit_code == 2 and "--time-budget applies to the trained graph encoders" in res.output
    res = run(["personas", "mine", "--encoder", "gat", "--max-steps", "0"], db, ok=False)
    assert res.exit_code == 2 and "--max-steps" in res.output
