"""Shared by the benchmark scripts: the JSON result file, with the machine and code version it was measured on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path


def write_result(out: str | Path, benchmark: str, rows: list[dict], **extra) -> None:
    """Write ``{"benchmark", "machine", "code", **extra, "rows"}`` to ``out`` and say where."""
    try:
        code = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        code = None
    result = {
        "benchmark": benchmark,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "code": code,
        **extra,
        "rows": rows,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
