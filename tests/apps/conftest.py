"""A small review workspace shared by the API and dashboard tests (built once per session, ~25 s).

Synthetic community (``pwb bench run synthetic_recovery``: tfidf and sage personas, three bench runs and a
task run with per-group scores), template rewrites of two prompts, and patch-generator images for three
users with their no-persona baselines (the dashboard's label pairs). The sage checkpoint serves cold start.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import cli

PROMPTS = "prompt_id\tprompt\np1\ta red bicycle\np2\ta lighthouse at dusk\n"


def _run(args):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


def build_review_workspace(root: Path, *, size: int = 64, users: int = 3) -> Path:
    """The fixture workspace in ``root`` (also used by the README screenshot script)."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "review.duckdb"
    task = json.loads(_run(["bench", "run", "synthetic_recovery", "--db", str(db), "--json"]))
    assert task["status"] == "completed"
    prompts = root / "p.tsv"
    prompts.write_text(PROMPTS)
    _run(["rewrite", "--prompts", str(prompts), "--db", str(db), "--json"])
    _run(
        [
            "generate",
            "--backend",
            "patch",
            "--pool",
            "samples",
            "--prompts",
            str(prompts),
            "--max-users",
            str(users),
            "--steps",
            "3",
            "--height",
            str(size),
            "--width",
            str(size),
            "--baseline",
            "--out",
            str(root / "images"),
            "--db",
            str(db),
            "--json",
        ]
    )
    return db


@pytest.fixture(scope="session")
def review_db(tmp_path_factory) -> Path:
    pytest.importorskip("skimage")
    return build_review_workspace(tmp_path_factory.mktemp("review"))


@pytest.fixture()
def review_copy(review_db, tmp_path) -> Path:
    """A private copy of the review workspace (with its images, models and prompt file) for one test."""
    import shutil

    dst = tmp_path / "ws"
    shutil.copytree(review_db.parent, dst)
    return dst / review_db.name
