"""What the Generations page reads and writes: persona-vs-baseline image pairs and their human labels, as plain
functions of an open :class:`Workspace` (the other pages' reads are :mod:`apps.dashboard.data`).

Nothing here imports Streamlit: the page calls these through the gate's read-only connection (and
:func:`store_label` through its one writer) and caches the results.
"""

from __future__ import annotations

from typing import Any

from apps.dashboard.data import natural_key, resolve_image
from evalbench.labels import add_label, label_pairs
from workbench.store.generations import generation_user
from workbench.store.labels import list_labels
from workbench.store.workspace import Workspace, WorkspaceError


def pair_users(ws: Workspace) -> list[str]:
    """Users with at least one persona image that has a no-persona baseline."""
    return sorted({p.user_id for p in label_pairs(ws)}, key=natural_key)


def pair_prompts(ws: Workspace, user_id: str) -> list[dict[str, str]]:
    """The prompts of ``user_id``'s pairs: ``prompt_id`` and the original (baseline) prompt text."""
    seen: dict[str, str] = {}
    for p in label_pairs(ws, user_id=user_id):
        seen.setdefault(p.prompt_id, p.baseline_prompt)
    return [{"prompt_id": k, "prompt": v} for k, v in sorted(seen.items(), key=lambda kv: natural_key(kv[0]))]


def pairs_for(ws: Workspace, user_id: str | None = None, prompt_id: str | None = None) -> list[dict[str, Any]]:
    """Label pairs with their image paths resolved (``a_path`` / ``b_path``; ``None`` when the file is gone)."""
    out = []
    for p in label_pairs(ws, user_id=user_id, prompt_id=prompt_id):
        d = p.to_dict()
        d["a_path"] = resolve_image(p.a_image, ws.path)
        d["b_path"] = resolve_image(p.b_image, ws.path)
        out.append(d)
    return out


def labels_by_pair(
    ws: Workspace, pair_ids: list[str] | tuple[str, ...] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Labels given so far (all, or those of ``pair_ids``), newest first, grouped by ``pair_id``.

    Each label has ``choice``, ``system_side``, ``annotator``, ``note``, ``created_at`` and ``verdict``
    (``persona``, ``baseline`` or ``flag``: what the choice means once the sides are known).
    """
    wanted = None if pair_ids is None else set(pair_ids)
    out: dict[str, list[dict[str, Any]]] = {}
    for lab in list_labels(ws):
        pair_id = f"{lab['system_generation_id']}:{lab['baseline_generation_id']}"
        if wanted is not None and pair_id not in wanted:
            continue
        r = {"pair_id": pair_id, **{k: lab[k] for k in ("choice", "system_side", "annotator", "note", "created_at")}}
        r["verdict"] = (
            "flag" if r["choice"] == "flag" else ("persona" if r["choice"] == r["system_side"] else "baseline")
        )
        out.setdefault(pair_id, []).append(r)
    return out


def find_pair(ws: Workspace, pair_id: str):
    """The :class:`~evalbench.labels.LabelPair` called ``pair_id`` (``<system gen>:<baseline gen>``)."""
    system_gen, _, _ = str(pair_id).partition(":")
    user = generation_user(ws, system_gen)
    for p in label_pairs(ws, user_id=user) if user is not None else []:
        if p.pair_id == pair_id:
            return p
    raise WorkspaceError(f"No image pair {pair_id!r} in this workspace (were its generations deleted?)")


def store_label(
    ws: Workspace, pair_id: str, choice: str, annotator: str | None = None, note: str | None = None
) -> dict[str, Any]:
    """Store one label (``choice``: ``a``, ``b`` or ``flag``) on a read-write workspace.

    Returns ``label_id``, ``choice``, ``system_side`` and ``system``, so the UI can reveal which side was
    the persona image once the label is in.
    """
    pair = find_pair(ws, pair_id)
    label_id = add_label(ws, pair, choice, annotator=annotator, note=note)
    return {
        "label_id": label_id,
        "pair_id": pair_id,
        "choice": choice,
        "system_side": pair.system_side,
        "system": pair.system,
        "annotator": annotator,
    }
