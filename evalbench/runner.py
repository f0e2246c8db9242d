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


def score_chunk(payload: dict[str, Any]) -> tuple[list[tuple[str, str, str | None]], list[tuple]]:
    """Score one chunk of users (runs in any executor): ``(unit rows, score rows)``.

    For each user and prompt: ``pref`` of the generic prompt and of the rewrite (hidden liked minus hidden
    negatives), their difference (lift) and the win; a user without hidden liked items or negatives is
    skipped with the reason.
    """
    from evalbench.metrics.encoders import load_text_encoder
    from evalbench.metrics.preference import TextPreference, preference_margin, win

    enc = load_text_encoder(payload["text_encoder"])
    metric = TextPreference(enc.label).name
    run_id = payload["run_id"]
    units, scores = [], []
    for u in payload["users"]:
        ids = [f"{u['user']}|{pid}" for pid in u["prompt_ids"]]
        if not u["liked"] or not u["negatives"]:
            detail = "no hidden liked items" if not u["liked"] else "no hidden negatives"
            units.extend((i, "skipped", detail) for i in ids)
            continue
        le, ne = enc.encode(u["liked"]), enc.encode(u["negatives"])
        g = preference_margin(enc.encode(u["generic"]), le, ne)
        r = preference_margin(enc.encode(u["rewritten"]), le, ne)
        lift = r - g
        w = win(lift)
        for k, unit in enumerate(ids):
            for name, value in (("generic", g[k]), ("rewritten", r[k]), ("lift", lift[k]), ("win", w[k])):
                scores.append((run_id, unit, f"{metric}.{name}", float(value), enc.model_id))
            units.append((unit, "scored", None))
    return units, scores


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


def run_bench(ws: Workspace, config: BenchConfig, *, progress: bool = False, executor: str = "local",
              workers: int | None = None, chunk_users: int = 8) -> dict[str, Any]:
    """Score ``config``'s system on the split's held-out users; resumes an unfinished run of the same config.

    Args:
        executor: ``local`` (in process), ``process`` (a local worker pool) or ``ray``; the scores are the
            same on every executor (see :mod:`evalbench.executors`).
        workers: pool size for ``process`` / CPUs for a local Ray cluster.
        chunk_users: users per work unit (each unit is written in one transaction).
    """
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

    # 3. Work units: chunks of users, each a self-contained payload (texts in, score rows out), so any
    #    executor can run them; the driver alone writes, one transaction per chunk.
    from tqdm.auto import tqdm

    from evalbench.executors import chunked, get_executor

    try:
        targets = hidden_targets(ws, split_id, todo)
        items = load_items(ws, split_dataset(ws, split_id))
        text = {i: items[i].text or items[i].title for t in targets.values() for ids in t.values() for i in ids}
        payloads = []
        for users_chunk in chunked(todo, chunk_users):
            per_user = []
            for u in users_chunk:
                pending = [(pid, p) for pid, p in prompts if f"{u}|{pid}" not in done]
                t = targets.get(u, {})
                per_user.append({
                    "user": u, "prompt_ids": [pid for pid, _ in pending], "generic": [p for _, p in pending],
                    "rewritten": [rewrites[(donor[u], pid)] for pid, _ in pending],
                    "liked": [text[i] for i in t.get("liked", [])],
                    "negatives": [text[i] for i in t.get("disliked", []) + t.get("unseen", [])],
                })
            payloads.append({"run_id": run_id, "text_encoder": config.text_encoder, "users": per_user})
        bar = tqdm(total=units_total, initial=len(done), desc=f"bench {full['system']}", unit="unit",
                   disable=not progress, mininterval=0.2)
        pool = get_executor(executor, workers=workers)
        try:
            for _, (units, scores) in pool.imap(score_chunk, payloads):
                write_units(ws, run_id, units, [Score(*s) for s in scores])
                bar.update(len(units))
        finally:
            pool.close()
        bar.close()
    except BaseException as exc:
        finish_run(ws, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(ws, run_id)
    return {**result, "status": "completed"}
