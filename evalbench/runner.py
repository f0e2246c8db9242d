"""Benchmark runs on held-out users: one system (persona encoder + rewriter) scored per unit.

A unit is one (held-out user, prompt) pair. Units are written per user inside a transaction together
with their ``run_units`` rows, so a killed run resumes where it stopped, with nothing lost or doubled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evalbench.store.datasets import load_items
from evalbench.store.prompts import load_prompts, register_prompt_set
from evalbench.store.runs import done_units, finish_run, start_run, write_units
from evalbench.store.workspace import Workspace, WorkspaceError
from persona.data.splits import hidden_targets, resolve_split, split_dataset, split_users
from persona.records import Score

CONTROLS = ("none", "shuffled")


@dataclass
class BenchConfig:
    """What one benchmark run evaluates.

    Args:
        split: Split id (``None``: the only split).
        encoder: Persona encoder whose personas were rewritten.
        backend: Rewriter backend.
        model: Rewriter model label as stored (``None``: the backend's default).
        prompts: Prompt set name or file.
        metric: Metric name (``text_preference``).
        text_encoder: Text encoder for the metric (``minilm`` embedded, or a sentence-transformers id).
        control: ``none``, or ``shuffled``: each user gets another held-out user's rewrite of the same
            prompt (a derangement by ``seed``), which separates "personal" from "just longer".
        seed: Seed for the control and the bootstrap.
    """

    split: str | None = None
    encoder: str = "tfidf"
    backend: str = "template"
    model: str | None = None
    prompts: str = "parti36"
    metric: str = "text_preference"
    text_encoder: str = "minilm"
    control: str = "none"
    seed: int = 0

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if self.metric != "text_preference":
            raise ValueError(f"metric must be 'text_preference' (the only one so far), got {self.metric!r}")

    @property
    def system(self) -> str:
        return self.system_for(self.model)

    def system_for(self, model: str | None) -> str:
        """``gat+embedded``, with the shot count of a k-shot model label (``gat+embedded k=3``) and the control."""
        shots = next((p[1:] for p in (model or "").split("|") if p[:1] == "k" and p[1:].isdigit()), None)
        return (f"{self.encoder}+{self.backend}" + (f" k={shots}" if shots else "")
                + ("" if self.control == "none" else f" ({self.control} control)"))


def _stored_model(ws: Workspace, cfg: BenchConfig, split_id: str, prompt_set: str) -> str:
    models = [r[0] for r in ws.query("SELECT DISTINCT model FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? "
                                     "AND prompt_set = ? ORDER BY 1", [split_id, cfg.encoder, cfg.backend, prompt_set])]
    if cfg.model is not None:
        if cfg.model not in models:
            raise WorkspaceError(f"No rewrites by model {cfg.model!r}; stored: {', '.join(models) or '(none)'}")
        return cfg.model
    if not models:
        raise WorkspaceError(f"No {cfg.backend} rewrites of {cfg.encoder} personas for prompt set {prompt_set!r} in "
                             f"split {split_id!r}: run `pwb rewrite --split {split_id} --encoder {cfg.encoder} "
                             f"--backend {cfg.backend} --prompts {cfg.prompts}` first.")
    if len(models) > 1:
        raise WorkspaceError(f"Several {cfg.backend} models have rewrites ({', '.join(models)}); pass --model.")
    return models[0]


def run_bench(ws: Workspace, config: BenchConfig, *, progress: bool = False) -> dict[str, Any]:
    """Score ``config``'s system on the split's held-out users; resumes an unfinished run of the same config."""
    # 1. Resolve inputs.
    split_id = resolve_split(ws, config.split)
    prompt_set = register_prompt_set(ws, config.prompts)
    model = _stored_model(ws, config, split_id, prompt_set)
    prompts = load_prompts(ws, prompt_set)
    users = split_users(ws, split_id, ("heldout",))
    if not users:
        raise WorkspaceError(f"Split {split_id!r} has no held-out users; make a split with --heldout > 0.")
    rewrites = dict(((u, p), r) for u, p, r in ws.query(
        "SELECT user_id, prompt_id, rewritten FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? AND model = ? "
        "AND prompt_set = ?", [split_id, config.encoder, config.backend, model, prompt_set]))
    lacking = [u for u in users if any((u, p) not in rewrites for p, _ in prompts)]
    if lacking:
        raise WorkspaceError(f"{len(lacking)} held-out users lack rewrites (e.g. {lacking[0]!r}): run `pwb rewrite "
                             f"--split {split_id} --encoder {config.encoder} --backend {config.backend}` first.")
    donor = {u: u for u in users}
    if config.control == "shuffled":
        perm = np.random.default_rng(config.seed).permutation(len(users))
        donor = {users[perm[i]]: users[perm[(i + 1) % len(users)]] for i in range(len(users))}

    # 2. Start or resume the run.
    full = {**asdict(config), "split": split_id, "model": model, "prompts": prompt_set, "system": config.system_for(model)}
    units_total = len(users) * len(prompts)
    run_id, before = start_run(ws, "bench", full, units_total)
    done = done_units(ws, run_id)
    todo = [u for u in users if any(f"{u}|{p}" not in done for p, _ in prompts)]
    result = {"run_id": run_id, "system": full["system"], "resumed": before not in ("new",), "units": units_total,
              "units_done_before": len(done)}
    if not todo:
        if before != "completed":
            finish_run(ws, run_id)
        return {**result, "status": "completed"}

    # 3. Embed the fixed texts once: generic prompts and the hidden items of the users left to score.
    from evalbench.metrics.encoders import load_text_encoder
    from evalbench.metrics.preference import TextPreference, preference_margin, win

    try:
        enc = load_text_encoder(config.text_encoder)
        metric = TextPreference(enc.label).name
        targets = hidden_targets(ws, split_id, todo)
        items = load_items(ws, split_dataset(ws, split_id))
        generic = enc.encode([p for _, p in prompts])
        needed = sorted({i for t in targets.values() for ids in t.values() for i in ids})
        enc.encode([items[i].text or items[i].title for i in needed])

        # 4. Score user by user; each user's units are one transaction.
        from tqdm.auto import tqdm

        bar = tqdm(total=units_total, initial=len(done), desc=f"bench {full['system']}", unit="unit",
                   disable=not progress, mininterval=0.2)
        for u in todo:
            pending = [(pid, p) for pid, p in prompts if f"{u}|{pid}" not in done]
            t = targets.get(u, {})
            liked = t.get("liked", [])
            negs = t.get("disliked", []) + t.get("unseen", [])
            if not liked or not negs:
                detail = "no hidden liked items" if not liked else "no hidden negatives"
                write_units(ws, run_id, [(f"{u}|{pid}", "skipped", detail) for pid, _ in pending], [])
                bar.update(len(pending))
                continue
            le = enc.encode([items[i].text or items[i].title for i in liked])
            ne = enc.encode([items[i].text or items[i].title for i in negs])
            idx = [k for k, (pid, _) in enumerate(prompts) if f"{u}|{pid}" not in done]
            g = preference_margin(generic[idx], le, ne)
            r = preference_margin(enc.encode([rewrites[(donor[u], pid)] for pid, _ in pending]), le, ne)
            lift = r - g
            w = win(lift)
            scores = []
            for k, (pid, _) in enumerate(pending):
                unit = f"{u}|{pid}"
                for name, value in (("generic", g[k]), ("rewritten", r[k]), ("lift", lift[k]), ("win", w[k])):
                    scores.append(Score(run_id, unit, f"{metric}.{name}", float(value), enc.model_id))
            write_units(ws, run_id, [(f"{u}|{pid}", "scored", None) for pid, _ in pending], scores)
            bar.update(len(pending))
        bar.close()
    except BaseException as exc:
        finish_run(ws, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(ws, run_id)
    return {**result, "status": "completed"}
