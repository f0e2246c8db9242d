"""Prompt sets: the shipped ones by name (``parti36``) or a user's TSV file, registered in the workspace."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from workbench.errors import DataError, Problems
from workbench.store.workspace import Workspace
from workbench.tabular import csv_rows

BUILTIN = {"parti36": "parti36.tsv", "parti12": "parti12.tsv", "parti6": "parti6.tsv", "parti3": "parti3.tsv"}


def read_prompt_file(path: Path) -> list[tuple[str, str, str, str]]:
    """``(prompt_id, prompt, category, challenge)`` rows of a prompt TSV/CSV; ids must be unique."""
    rows, seen = [], set()
    for line, row in csv_rows(path, ["prompt_id", "prompt"], Problems()):
        pid, prompt = row["prompt_id"].strip(), row["prompt"].strip()
        if not pid or not prompt:
            raise DataError("empty value", file=str(path), line=line, field="prompt_id" if not pid else "prompt")
        if pid in seen:
            raise DataError(f"duplicate prompt id {pid!r}", file=str(path), line=line, field="prompt_id")
        seen.add(pid)
        rows.append((pid, prompt, row.get("category", ""), row.get("challenge", "")))
    if not rows:
        raise DataError("no prompts", file=str(path))
    return rows


def register_prompt_set(ws: Workspace, source: str) -> str:
    """Make sure prompt set ``source`` (a builtin name or a file path) is in the workspace; returns its name.

    A file is registered under its stem; registering different prompts under an existing name is an error.
    """
    if source in BUILTIN:
        name = source
        with resources.as_file(resources.files("evalbench.tasks.prompts").joinpath(BUILTIN[source])) as p:
            rows = read_prompt_file(Path(p))
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(
                f"no prompt set or file {source!r}",
                field="prompts",
                fix=f"Use one of: {', '.join(BUILTIN)}, or a TSV with prompt_id and prompt columns.",
            )
        name = path.stem
        rows = read_prompt_file(path)
    stored = ws.query(
        "SELECT prompt_id, prompt, category, challenge FROM prompts WHERE prompt_set = ? ORDER BY prompt_id", [name]
    )
    if stored:
        if sorted(stored) != sorted(rows):
            raise DataError(
                f"prompt set {name!r} is already stored with other prompts",
                field="prompts",
                fix="Rename the file to register it as a new set.",
            )
        return name
    with ws.transaction():
        ws.insert_columns(
            "prompts",
            {
                "prompt_set": [name] * len(rows),
                "prompt_id": [r[0] for r in rows],
                "prompt": [r[1] for r in rows],
                "category": [r[2] for r in rows],
                "challenge": [r[3] for r in rows],
            },
        )
    return name


def load_prompts(ws: Workspace, prompt_set: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in ws.query("SELECT prompt_id, prompt FROM prompts WHERE prompt_set = ? ORDER BY prompt_id", [prompt_set])
    ]
