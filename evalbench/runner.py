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
from persona.data.splits import hidden_targets, resolve_split, split_dataset, split_users, visible_interactions
from persona.records import Score

CONTROLS = ("none", "shuffled")
#: reference rows every personal table carries: the history ceiling (the user's own visible likes, no
#: prompt, against the partners') and the popularity control (the same popular titles for everyone)
REFERENCES = ("history", "popularity")
REFERENCE_NAMES = {"history": "history ceiling", "popularity": "popularity control"}


@dataclass
class BenchConfig:
    """What one benchmark run evaluates.

    Args:
        split: Split id (``None``: the only split).
        encoder: Persona set whose personas were rewritten (an encoder name, or one with options such as
            ``gat[traits=share]``; see :func:`persona.mining.persona_set`).
        backend: Rewriter backend.
        model: Rewriter model label as stored (``None``: the backend's default).
        prompts: Prompt set name or file.
        metric: Metric name (``text_preference``).
        text_encoder: Text encoder for the metric (``minilm`` embedded, ``mpnet`` fetched at first use, or a
            sentence-transformers id/path).
        control: ``none``, or ``shuffled``: each user gets another held-out user's rewrite of the same
            prompt (a derangement by ``seed``), which separates "personal" from "just longer".
        seed: Seed for the control, the partners and the bootstrap.
        partners: Other held-out users each user's rewrite is compared with for the personal win rate
            (0: every other held-out user; K: K drawn by ``seed``, the same K whenever the run resumes).
        reference: ``""`` for a system; ``history`` or ``popularity`` for the reference rows (no encoder,
            backend or rewrites needed).
        popular_titles: How many of the most liked titles the popularity control names.
        max_users: Score only the first this many held-out users (by id), partners among them too (0: all);
            for slow rewriters, e.g. an LLM on a laptop.
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
    partners: int = 0
    reference: str = ""
    popular_titles: int = 3
    max_users: int = 0

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if self.metric != "text_preference":
            raise ValueError(f"metric must be 'text_preference' (the only one so far), got {self.metric!r}")
        if isinstance(self.partners, bool) or not isinstance(self.partners, int) or self.partners < 0:
            raise ValueError(f"partners must be 0 (every other held-out user) or a positive number, got {self.partners!r}")
        if isinstance(self.max_users, bool) or not isinstance(self.max_users, int) or self.max_users < 0:
            raise ValueError(f"max_users must be 0 (every held-out user) or a positive number, got {self.max_users!r}")
        if self.reference and self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCES)} (or empty for a system), "
                             f"got {self.reference!r}")
        if self.reference:
            self.encoder, self.backend, self.model, self.control = "none", self.reference, None, "none"
            if self.reference == "history":
                self.prompts = "-"

    @property
    def system(self) -> str:
        return self.system_for(self.model)

    @property
    def metric_name(self) -> str:
        """The metric with its encoder, as stored: ``text_preference[minilm]``."""
        from evalbench.metrics.encoders import encoder_label

        return f"{self.metric}[{encoder_label(self.text_encoder)}]"

    def system_for(self, model: str | None) -> str:
        """``gat+embedded``, with the shot count of a k-shot model label (``gat+embedded k=3``), the
        candidate count (``N=8``) and the control; the reference rows by their names."""
        if self.reference:
            return REFERENCE_NAMES[self.reference]
        flags = {p[:1]: p[1:] for p in (model or "").split("|")[1:] if p[:1] in ("k", "n") and p[1:].isdigit()}
        return (f"{self.encoder}+{self.backend}" + (f" k={flags['k']}" if "k" in flags else "")
                + (f" N={flags['n']}" if "n" in flags else "")
                + ("" if self.control == "none" else f" ({self.control} control)"))


def score_chunk(payload: dict[str, Any]) -> tuple[list[tuple[str, str, str | None]], list[tuple]]:
    """Score one chunk of users (runs in any executor): ``(unit rows, score rows)``.

    For each user and prompt: ``pref`` of the generic prompt and of the rewrite (hidden liked minus hidden
    negatives: the unseen items the split drew, popularity-matched by default; see
    :mod:`persona.data.splits`), their difference (lift) and the win against the generic prompt; then the
    personal win: the share of the user's partners whose rewrite of the same prompt the user's scores below their own,
    on the user's hidden items (``personal``), the same with the hidden dislikes as the only negatives
    (``personal_dislikes``, users with hidden dislikes only), and the margin over the partners' mean
    (``personal_margin``). The history ceiling (``reference: history``) scores one unit per user: the
    centroid of the user's visible likes against each partner's. A user without hidden liked items or
    negatives is skipped with the reason.
    """
    from evalbench.metrics.encoders import load_text_encoder
    from evalbench.metrics.preference import personal_win, preference_margin, win

    enc = load_text_encoder(payload["text_encoder"])
    metric = payload["metric"]
    run_id = payload["run_id"]
    pool_users = payload["pool_users"]
    row = {u: k for k, u in enumerate(pool_users)}
    units, scores = [], []
    if payload.get("reference") == "history":
        cents = []
        for u in pool_users:
            e = enc.encode(payload["history"][u]) if payload["history"][u] else np.zeros((1, 1), np.float32)
            c = e.mean(axis=0)
            cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
        pool = {"history": np.stack(cents)}
    else:
        pool = {pid: enc.encode(texts) for pid, texts in payload["pool"].items()}

    def add(unit, name, value):
        scores.append((run_id, unit, f"{metric}.{name}", float(value), enc.model_id))

    for u in payload["users"]:
        ids = [f"{u['user']}|{pid}" for pid in u["prompt_ids"]]
        if not u["liked"] or not u["negatives"]:
            detail = "no hidden liked items" if not u["liked"] else "no hidden negatives"
            units.extend((i, "skipped", detail) for i in ids)
            continue
        le, ne = enc.encode(u["liked"]), enc.encode(u["negatives"])
        de = enc.encode(u["disliked"]) if u["disliked"] else None
        part = [row[v] for v in u["partners"]]
        if payload.get("reference") == "history":
            everyone, me = preference_margin(pool["history"], le, ne), row[u["user"]]
            add(ids[0], "personal", personal_win(everyone[[me]], everyone[part][None, :])[0])
            add(ids[0], "personal_margin", everyone[me] - everyone[part].mean())
            if de is not None:
                d_all = preference_margin(pool["history"], le, de)
                add(ids[0], "personal_dislikes", personal_win(d_all[[me]], d_all[part][None, :])[0])
            units.append((ids[0], "scored", None))
            continue
        g = preference_margin(enc.encode(u["generic"]), le, ne)
        src = row[u["source"]]
        for k, (unit, pid) in enumerate(zip(ids, u["prompt_ids"])):
            # every user's rewrite of this prompt scored on this user's hidden items in one product, so equal
            # texts (the popularity control) get bit-equal scores and tie
            everyone = preference_margin(pool[pid], le, ne)
            r, others = everyone[src], everyone[part]
            lift = r - g[k]
            for name, value in (("generic", g[k]), ("rewritten", r), ("lift", lift), ("win", win(lift))):
                add(unit, name, value)
            add(unit, "personal", personal_win(np.array([r]), others[None, :])[0])
            add(unit, "personal_margin", r - others.mean())
            if de is not None:
                d_all = preference_margin(pool[pid], le, de)
                add(unit, "personal_dislikes", personal_win(d_all[[src]], d_all[part][None, :])[0])
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


def partners_of(users: list[str], k: int, seed: int, exclude: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Each user's partners for the personal win rate: every other user (``k = 0``) or ``k`` of them drawn
    with ``seed`` (fewer when there are not enough), never the user and never ``exclude[user]`` (the
    shuffled control's donor). Deterministic for a given user list, so a resumed run meets the same partners.

    >>> partners_of(["a", "b", "c"], 0, 0)
    {'a': ['b', 'c'], 'b': ['a', 'c'], 'c': ['a', 'b']}
    """
    rng = np.random.default_rng(seed)
    out = {}
    for u in users:
        others = [v for v in users if v != u and v != (exclude or {}).get(u)]
        if k and k < len(others):
            others = sorted(rng.choice(np.array(others, dtype=object), size=k, replace=False).tolist())
        out[u] = others
    return out


def popular_titles(ws: Workspace, split_id: str, n: int = 3) -> list[str]:
    """Titles of the ``n`` items the most training users liked (visible interactions only; ties by id)."""
    from evalbench.store.datasets import dataset_meta

    dataset_id = split_dataset(ws, split_id)
    like = dataset_meta(ws, dataset_id).get("like_threshold")
    rows = ws.query(
        """
        SELECT i.title FROM interactions x
        JOIN split_users s ON s.user_id = x.user_id AND s.split_id = ? AND s.role = 'train'
        JOIN items i ON i.dataset_id = x.dataset_id AND i.item_id = x.item_id
        WHERE x.dataset_id = ? AND (? IS NULL OR x.value IS NULL OR x.value >= ?) AND coalesce(i.title, '') <> ''
        GROUP BY i.item_id, i.title ORDER BY count(DISTINCT x.user_id) DESC, i.item_id LIMIT ?
        """, [split_id, dataset_id, like, like, n])
    return [r[0] for r in rows]


def popularity_rewrite(prompt: str, titles: list[str]) -> str:
    """The popularity control's rewrite: the same titles for everyone (``in the spirit of A, B and C``)."""
    head = prompt.strip().rstrip(" .,;:")
    if not titles:
        return head
    names = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
    return f"{head}, in the spirit of {names}"


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
    users = split_users(ws, split_id, ("heldout",))
    if config.max_users:
        users = users[:config.max_users]
    if not users:
        raise WorkspaceError(f"Split {split_id!r} has no held-out users; make a split with --heldout > 0.")
    reference = config.reference
    if reference == "history":
        prompt_set, model, prompts = "-", None, [("history", "")]
        rewrites: dict[tuple[str, str], str] = {}
    else:
        prompt_set = register_prompt_set(ws, config.prompts)
        prompts = load_prompts(ws, prompt_set)
        if reference == "popularity":
            titles = popular_titles(ws, split_id, config.popular_titles)
            model = "popular-titles(" + ", ".join(titles) + ")"
            rewrites = {(u, pid): popularity_rewrite(p, titles) for u in users for pid, p in prompts}
        else:
            model = _stored_model(ws, config, split_id, prompt_set)
            rewrites = dict(((u, p), r) for u, p, r in ws.query(
                "SELECT user_id, prompt_id, rewritten FROM rewrites WHERE split_id = ? AND encoder = ? AND backend = ? "
                "AND model = ? AND prompt_set = ?", [split_id, config.encoder, config.backend, model, prompt_set]))
            lacking = [u for u in users if any((u, p) not in rewrites for p, _ in prompts)]
            if lacking:
                raise WorkspaceError(f"{len(lacking)} held-out users lack rewrites (e.g. {lacking[0]!r}): run `pwb rewrite "
                                     f"--split {split_id} --encoder {config.encoder} --backend {config.backend}` first.")
    donor = {u: u for u in users}
    if config.control == "shuffled":
        perm = np.random.default_rng(config.seed).permutation(len(users))
        donor = {users[perm[i]]: users[perm[(i + 1) % len(users)]] for i in range(len(users))}
    partners = partners_of(users, config.partners, config.seed,
                           exclude=donor if config.control == "shuffled" else None)

    # 2. Start or resume the run.
    full = {**asdict(config), "split": split_id, "model": model, "prompts": prompt_set, "system": config.system_for(model),
            "metric_name": config.metric_name}
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

        def text(i):
            return items[i].text or items[i].title

        shared: dict[str, Any] = {"run_id": run_id, "text_encoder": config.text_encoder, "metric": config.metric_name,
                                  "reference": reference, "pool_users": users}
        if reference == "history":
            shared["history"] = {u: [text(i) for i in ids] for u, ids in visible_likes(ws, split_id, users).items()}
        else:
            shared["pool"] = {pid: [rewrites[(u, pid)] for u in users] for pid, _ in prompts}
        payloads = []
        for users_chunk in chunked(todo, chunk_users):
            per_user = []
            for u in users_chunk:
                pending = [(pid, p) for pid, p in prompts if f"{u}|{pid}" not in done]
                t = targets.get(u, {})
                per_user.append({
                    "user": u, "prompt_ids": [pid for pid, _ in pending], "generic": [p for _, p in pending],
                    "source": donor[u],  # whose rewrite is scored as this user's (another user's in the control)
                    "liked": [text(i) for i in t.get("liked", [])],
                    "negatives": [text(i) for i in t.get("unseen", [])],
                    "disliked": [text(i) for i in t.get("disliked", [])],
                    "partners": partners[u],
                })
            payloads.append({**shared, "users": per_user})
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


def visible_likes(ws: Workspace, split_id: str, users: list[str]) -> dict[str, list[str]]:
    """Each user's visible liked item ids (all visible items for a user with no visible like), by id."""
    from evalbench.store.datasets import dataset_meta

    like = dataset_meta(ws, split_dataset(ws, split_id)).get("like_threshold")
    out: dict[str, list[str]] = {u: [] for u in users}
    everything: dict[str, list[str]] = {u: [] for u in users}
    for x in visible_interactions(ws, split_id, users):
        everything[x.user_id].append(x.item_id)
        if like is None or x.value is None or x.value >= like:
            out[x.user_id].append(x.item_id)
    return {u: sorted(set(out[u] or everything[u])) for u in users}
