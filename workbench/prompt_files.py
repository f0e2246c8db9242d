"""Prompt sets from files as a newcomer brings them.

Formats, chosen by the file's suffix (``.gz`` allowed):

- ``.txt``: one prompt a line (blank lines and lines starting with ``#`` skipped); ids ``p-0001``, ...
- ``.csv`` / ``.tsv`` (or ``.tab``): a header with a prompt column (``prompt`` unless told otherwise) and
  optionally an id column (``prompt_id``; row numbers otherwise), ``category`` and ``challenge``;
- ``.json``: a list of strings or of objects (``{"prompt": ..., "prompt_id": ...}``), or an object holding
  such a list under ``"prompts"``;
- ``.jsonl``: one string or object a line;
- ``hf:NAME`` (Hugging Face ``datasets``): a hub name, or a folder written by ``Dataset.save_to_disk``,
  with the same column options (``split`` picks the split of a hub dataset).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import DataError, Problems
from workbench.tabular import csv_rows, read_text

#: ``(prompt_id, prompt, category, challenge)``
PromptRow = tuple[str, str, str, str]


@dataclass(frozen=True)
class PromptColumns:
    """Which columns (CSV/TSV, JSON objects, datasets) hold what; ``id`` may be absent from the data."""

    id: str = "prompt_id"
    prompt: str = "prompt"
    category: str = "category"
    challenge: str = "challenge"


def read_prompts(
    source: str | Path, columns: PromptColumns | None = None, *, split: str = "train", limit: int | None = None
) -> list[PromptRow]:
    """The prompts of a file or ``hf:`` dataset (see the module docstring), ids unique, none empty.

    Raises :class:`DataError` naming the file, the line and the field, with the fix.
    """
    cols = columns or PromptColumns()
    text = str(source)
    if text.startswith("hf:"):
        records, where = _dataset_records(text[3:], split), text
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                "file not found",
                file=str(path),
                field="prompts",
                fix="Pass a .txt, .csv, .tsv, .json or .jsonl file, or hf:<dataset name>.",
            )
        records, where = _file_records(path, cols), str(path)
    rows = _rows(records, cols, where)
    return rows[:limit] if limit is not None else rows


def _file_records(path: Path, cols: PromptColumns) -> list[tuple[int, Any]]:
    """``(line, record)``: a record is a prompt string or a dict of columns."""
    suffix = path.name.removesuffix(".gz").rsplit(".", 1)[-1].lower() if "." in path.name else ""
    if suffix == "txt":
        lines = read_text(path).splitlines()
        return [(n, s.strip()) for n, s in enumerate(lines, 1) if s.strip() and not s.lstrip().startswith("#")]
    if suffix == "jsonl":
        out = []
        for n, line in enumerate(read_text(path).splitlines(), 1):
            if line.strip():
                out.append((n, _json(line, path, n)))
        return out
    if suffix == "json":
        data = _json(read_text(path), path, None)
        if isinstance(data, dict) and isinstance(data.get("prompts"), list):
            data = data["prompts"]
        if not isinstance(data, list):
            raise DataError(
                "expected a list of prompts (strings or objects), or an object with a 'prompts' list",
                file=str(path),
                field="prompts",
            )
        return [(n, r) for n, r in enumerate(data, 1)]
    return list(csv_rows(path, [cols.prompt], Problems()))


def _json(text: str, path: Path, line: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg} at column {exc.colno})",
            file=str(path),
            line=line if line is not None else exc.lineno,
            fix="JSON holds a list of prompts; JSON Lines (.jsonl) one prompt a line.",
        ) from exc


def _dataset_records(name: str, split: str) -> list[tuple[int, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            "reading hf: prompt sets needs the `datasets` package",
            field="prompts",
            fix="pip install 'persona-workbench[hf]'",
        ) from exc
    try:
        ds = datasets.load_from_disk(name) if Path(name).is_dir() else datasets.load_dataset(name, split=split)
    except Exception as exc:  # the hub's errors are many; all mean the same to the user
        raise DataError(
            f"could not load dataset {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            field="prompts",
            fix="Check the name (or the folder) and the network, or export the prompts to a .jsonl file.",
        ) from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"dataset {name!r} has no split {split!r}; it has {', '.join(ds)}", field="split")
        ds = ds[split]
    return [(n, row) for n, row in enumerate(ds, 1)]


def _rows(records: list[tuple[int, Any]], cols: PromptColumns, where: str) -> list[PromptRow]:
    rows: list[PromptRow] = []
    seen: set[str] = set()
    for n, rec in records:
        if isinstance(rec, str):
            rec = {cols.prompt: rec}
        if not isinstance(rec, dict):
            raise DataError(f"expected a prompt string or an object, got {type(rec).__name__}", file=where, line=n)
        if cols.prompt not in rec:
            raise DataError(
                f"no {cols.prompt!r} field; the record has {', '.join(map(str, rec)) or 'none'}",
                file=where,
                line=n,
                field=cols.prompt,
                fix="Name the prompt's field with --prompt-column (and the id's with --id-column).",
            )
        prompt = str(rec[cols.prompt] or "").strip()
        pid = str(rec.get(cols.id) if rec.get(cols.id) is not None else rec.get("id") or f"p-{n:04d}").strip()
        if not prompt:
            raise DataError("empty prompt", file=where, line=n, field=cols.prompt)
        if not pid:
            raise DataError("empty prompt id", file=where, line=n, field=cols.id)
        if pid in seen:
            raise DataError(f"duplicate prompt id {pid!r}", file=where, line=n, field=cols.id)
        seen.add(pid)
        rows.append((pid, prompt, str(rec.get(cols.category) or ""), str(rec.get(cols.challenge) or "")))
    if not rows:
        raise DataError("no prompts", file=where, field="prompts")
    return rows
