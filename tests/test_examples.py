"""The examples run as a user would run them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "q.duckdb")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "persona of u1: Drawn to" in out.stdout
    assert "rewrite: a lighthouse at dusk, inspired by" in out.stdout
    rows = [line for line in out.stdout.splitlines() if " personal " in line]
    assert len(rows) == 4 and "text_preference[minilm]" in out.stdout
    assert rows[0].startswith("history ceiling") and rows[1].startswith("tfidf+template ")


def test_personas_tour_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "personas.py"), str(tmp_path / "p.duckdb")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for line in (
        "persona of u1: Drawn to",
        "top evidence:",
        "cohort 'heavy' (",
        "archetype:2 (",
        "planted personas recovered: NMI",
        "cold-start persona: Drawn to",
        "survey answer",
    ):
        assert line in out.stdout, line
    assert (tmp_path / "models").is_dir()  # the trained model is kept next to the workspace


def test_generation_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "generate_users.py"), str(tmp_path / "g")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "u1: apg       20 UNet evaluations" in out.stdout
    assert "u2: interval  15 UNet evaluations" in out.stdout
    assert len(list((tmp_path / "g" / "images").rglob("*.png"))) == 3
