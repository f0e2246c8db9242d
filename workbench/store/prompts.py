"""Prompt sets in the workspace: the bundled ones by name (``parti36``), files and datasets a user brings
(:mod:`workbench.prompt_files`), and stored sets used again by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from workbench.errors import DataError
from workbench.prompt_files import PromptColumns, PromptRow, read_prompts
from workbench.store.workspace import Workspace

BUILTIN = {"parti36": "parti36.tsv", "parti12": "parti12.tsv", "parti6": "parti6.tsv", "parti3": "parti3.tsv"}


def register_prompt_set(ws: Workspace, source: str) -> str:
    """Make sure prompt set ``source`` is in the workspace and return its name: a bundled name, the name of
    a stored set, or a file (stored under its stem) or ``hf:`` dataset.

    Registering different prompts under an existing name is an error.
    """
    if source in BUILTIN:
        with resources.as_file(resources.files("evalbench.tasks.prompts").joinpath(BUILTIN[source])) as p:
            return _store(ws, source, read_prompts(Path(p)))
    if not source.startswith("hf:") and not Path(source).exists():
        if stored_prompt_sets(ws).get(source):
            return source
        stored = ", ".join(sorted(stored_prompt_sets(ws))) or "none"
        raise DataError(
            f"no prompt set or file {source!r} (bundled: {', '.join(BUILTIN)}; stored: {stored})",
            field="prompts",
            fix="Import it first with `pwb prompts import FILE --name NAME`, or pass a .txt, .csv, .tsv, .json or "
            ".jsonl file.",
        )
    return _store(ws, _default_name(source), read_prompts(source))


def import_prompt_set(
    ws: Workspace,
    source: str,
    *,
    name: str | None = None,
    columns: PromptColumns | None = None,
    split: str = "train",
    limit: int | None = None,
) -> dict:
    """Store the prompts of a file or ``hf:`` dataset under ``name`` (default: the file's stem); returns
    ``{"prompt_set", "prompts", "stored"}`` (``stored`` is false when the same set was already there)."""
    rows = read_prompts(source, columns, split=split, limit=limit)
    name = name or _default_name(source)
    if name in BUILTIN:
        raise DataError(f"{name!r} is a bundled prompt set", field="name", fix="Choose another --name.")
    before = stored_prompt_sets(ws).get(name, 0)
    _store(ws, name, rows)
    return {"prompt_set": name, "prompts": len(rows), "stored": not before}


def load_prompts(ws: Workspace, prompt_set: str) -> list[tuple[str, str]]:
    """``(prompt_id, prompt)`` of a stored set, by id."""
    return [
        (r[0], r[1])
        for r in ws.query("SELECT prompt_id, prompt FROM prompts WHERE prompt_set = ? ORDER BY prompt_id", [prompt_set])
    ]


def read_prompt_set(ws: Workspace, name: str) -> list[tuple[str, str]]:
    """``(prompt_id, prompt)`` of a set by name, storing nothing (a read-only workspace will do): a stored set,
    else a bundled one; anything else is an error naming ``prompt_set`` and the sets there are."""
    rows = load_prompts(ws, name)
    if rows:
        return rows
    if name in BUILTIN:
        with resources.as_file(resources.files("evalbench.tasks.prompts").joinpath(BUILTIN[name])) as p:
            return sorted((r[0], r[1]) for r in read_prompts(Path(p)))
    stored = ", ".join(sorted(stored_prompt_sets(ws))) or "none"
    raise DataError(
        f"no prompt set {name!r} (stored: {stored}; bundled: {', '.join(BUILTIN)})",
        field="prompt_set",
        fix="Import it first with `pwb prompts import FILE --name NAME`.",
    )


def stored_prompt_sets(ws: Workspace) -> dict[str, int]:
    """``{prompt_set: number of prompts}`` of the sets in the workspace."""
    return dict(ws.query("SELECT prompt_set, count(*) FROM prompts GROUP BY prompt_set ORDER BY prompt_set"))


def list_prompt_sets(ws: Workspace) -> list[dict]:
    """Every set usable by name: the stored ones, then the bundled ones not stored yet."""
    stored = stored_prompt_sets(ws)
    rows = [
        {"prompt_set": k, "prompts": n, "source": "bundled" if k in BUILTIN else "stored"} for k, n in stored.items()
    ]
    for k in BUILTIN:
        if k not in stored:
            with resources.as_file(resources.files("evalbench.tasks.prompts").joinpath(BUILTIN[k])) as p:
                rows.append({"prompt_set": k, "prompts": len(read_prompts(Path(p))), "source": "bundled"})
    return rows


def _default_name(source: str) -> str:
    """A file's stem (``.gz`` dropped), or the last part of an ``hf:`` name."""
    if source.startswith("hf:"):
        return source[3:].rstrip("/").split("/")[-1]
    return Path(Path(source).name.removesuffix(".gz")).stem


def _store(ws: Workspace, name: str, rows: list[PromptRow]) -> str:
    stored = ws.query(
        "SELECT prompt_id, prompt, category, challenge FROM prompts WHERE prompt_set = ? ORDER BY prompt_id", [name]
    )
    if stored:
        if sorted(stored) != sorted(rows):
            raise DataError(
                f"prompt set {name!r} is already stored with other prompts",
                field="prompts",
                fix="Store it under another name (`pwb prompts import FILE --name NEW`, or rename the file).",
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
