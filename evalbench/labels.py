"""Human labels: a person compares a persona image with its no-persona baseline and says which fits.

Pairs come from the workspace's generations: a *system* image (its condition has a ``persona_id``) and
its *baseline* (same user, prompt, seed, references, guidance, backend and model, drawn from the original
prompt; ``pwb generate --baseline``). Which side shows the system is fixed per pair by a hash, so half the pairs show it on the
left; the label stores the side, so position bias cannot pass for preference.

:func:`human_preference` reports the share of non-flagged labels that prefer the system, per system, with
a user-bootstrap CI and a two-sided sign test against 0.5 (``scipy.stats.binomtest``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.store.labels import insert_label, label_choices, label_pair_rows

CHOICES = ("a", "b", "flag")


@dataclass(frozen=True)
class LabelPair:
    """One side-by-side: ``a_*`` left, ``b_*`` right; ``system_side`` says which is the persona image."""

    user_id: str
    prompt_id: str
    system: str
    system_generation_id: str
    baseline_generation_id: str
    system_side: str
    a_image: str
    b_image: str
    system_prompt: str
    baseline_prompt: str

    @property
    def pair_id(self) -> str:
        return f"{self.system_generation_id}:{self.baseline_generation_id}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pair_id": self.pair_id}


def _side(system_gen: str, baseline_gen: str) -> str:
    return "a" if hashlib.sha256(f"{system_gen}|{baseline_gen}".encode()).digest()[0] % 2 == 0 else "b"


def system_name(persona_id: str | None, backend: str, model: str) -> str:
    """``<encoder> -> <backend>:<model>`` from a persona id ``split/encoder/user``."""
    parts = (persona_id or "").split("/")
    encoder = parts[-2] if len(parts) >= 3 else "?"
    return f"{encoder} -> {model if model.startswith(backend + ':') else f'{backend}:{model}'}"


def label_pairs(ws, *, user_id: str | None = None, prompt_id: str | None = None) -> list[LabelPair]:
    """Every (system image, baseline image) pair stored, optionally for one user or prompt."""
    out, seen = [], set()
    for u, p, pid, backend, model, gs, gb, ps, pb, txt_s, txt_b in label_pair_rows(
        ws, user_id=user_id, prompt_id=prompt_id
    ):
        if gs in seen:  # one baseline per system image (the newest condition wins on re-draws)
            continue
        seen.add(gs)
        side = _side(gs, gb)
        a, b = (ps, pb) if side == "a" else (pb, ps)
        out.append(LabelPair(u, p, system_name(pid, backend, model), gs, gb, side, a, b, txt_s, txt_b))
    return out


def label_row(pair: LabelPair, choice: str, *, annotator: str | None = None, note: str | None = None) -> dict[str, Any]:
    """The ``labels`` row for one label (a new id); ``ValueError`` for an unknown choice."""
    if choice not in CHOICES:
        raise ValueError(f"label choice must be one of {', '.join(CHOICES)}, got {choice!r}")
    return {
        "label_id": uuid.uuid4().hex[:16],
        "user_id": pair.user_id,
        "prompt_id": pair.prompt_id,
        "system_generation_id": pair.system_generation_id,
        "baseline_generation_id": pair.baseline_generation_id,
        "system_side": pair.system_side,
        "choice": choice,
        "annotator": annotator,
        "note": note,
    }


def add_label(ws, pair: LabelPair, choice: str, *, annotator: str | None = None, note: str | None = None) -> str:
    """Store one label (``choice``: ``a`` = left, ``b`` = right, ``flag`` = something wrong); returns its id."""
    row = label_row(pair, choice, annotator=annotator, note=note)
    insert_label(ws, row)
    return row["label_id"]


def human_preference(ws, *, seed: int = 0) -> list[dict[str, Any]]:
    """Per system: labels, flags, share preferring the system [95% user-bootstrap CI], sign-test p."""
    from scipy.stats import binomtest

    from evalbench.metrics.preference import cluster_mean_ci

    by: dict[str, list[tuple[str, str, str]]] = {}
    for u, side, choice, pid, backend, model in label_choices(ws):
        by.setdefault(system_name(pid, backend, model), []).append((u, side, choice))
    out = []
    for system, labs in sorted(by.items()):
        judged = [(u, float(c == side)) for u, side, c in labs if c != "flag"]
        wins = int(sum(v for _, v in judged))
        row: dict[str, Any] = {
            "system": system,
            "labels": len(labs),
            "flags": len(labs) - len(judged),
            "judged": len(judged),
            "prefer_system": wins,
        }
        if judged:
            m, lo, hi = cluster_mean_ci(np.array([v for _, v in judged]), np.array([u for u, _ in judged]), seed=seed)
            row.update(
                win_rate=m,
                ci_low=lo,
                ci_high=hi,
                users=len({u for u, _ in judged}),
                sign_test_p=float(binomtest(wins, len(judged), 0.5).pvalue),
            )
        else:
            row.update(
                win_rate=float("nan"), ci_low=float("nan"), ci_high=float("nan"), users=0, sign_test_p=float("nan")
            )
        out.append(row)
    return out
