"""The examples run as a user would run them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "q.duckdb")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "persona of u1: Drawn to" in out.stdout
    assert "rewrite: a lighthouse at dusk, inspired by" in out.stdout
    assert out.stdout.count("win rate") == 2 and "text_preference[minilm]" in out.stdout
