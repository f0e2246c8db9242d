"""Benchmark runs on held-out users: one system (persona encoder + rewriter) scored per unit.

A unit is one (held-out user, prompt) pair. Units are written per user inside a transaction together
with their ``run_units`` rows, so a killed run resumes where it stopped, with nothing lost or doubled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evalbench.metrics import PRIMARY, MetricSpec
from prompting.guard import fit_prompts
from workbench.records import Score
from workbench.store.datasets import load_items
from workbench.store.prompts import load_prompts, register_prompt_set
from workbench.store.rewrites import RewriteKey, load_rewrites, resolve_rewrite_model
from workbench.store.runs import (
    done_units,
    finish_run,
    metric_results,
    start_run,
    unit_outcomes,
    unit_scores,
    write_metric_results,
    write_units,
)
from workbench.store.splits import (
    hidden_targets,
    most_liked_titles,
    resolve_split,
    split_dataset,
    split_users,
    visible_interactions,
)
from workbench.store.workspace import Workspace, WorkspaceError

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
        metric: The metric every text run scores (``text_preference``: the personal win rate and the win
            rate against the generic prompt).
        more_metrics: Further text metrics scored on the same units (:class:`evalbench.metrics.MetricSpec`,
            e.g. ``rewrite_spread``); none for the history ceiling, which has no rewrites.
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
    more_metrics: tuple[MetricSpec, ...] = ()

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if self.metric != PRIMARY:
            raise ValueError(f"metric must be {PRIMARY!r} (further metrics go in more_metrics), got {self.metric!r}")
        self.more_metrics = tuple(m if isinstance(m, MetricSpec) else MetricSpec.of(m) for m in self.more_metrics)
        if any(m.name == PRIMARY for m in self.more_metrics):
            raise ValueError(f"more_metrics: {PRIMARY} is the run's metric already; list only further ones")
        if self.more_metrics and self.reference == "history":
            raise ValueError("more_metrics: the history ceiling has no rewrites to score; drop them for it")
        if isinstance(self.partners, bool) or not isinstance(self.partners, int) or self.partners < 0:
            raise ValueError(
                f"partners must be 0 (every other held-out user) or a positive number, got {self.partners!r}"
            )
        if isinstance(self.max_users, bool) or not isinstance(self.max_users, int) or self.max_users < 0:
            raise ValueError(f"max_users must be 0 (every held-out user) or a positive number, got {self.max_users!r}")
        if self.reference and self.reference not in REFERENCES:
            raise ValueError(
                f"reference must be one of {', '.join(REFERENCES)} (or empty for a system), got {self.reference!r}"
            )
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
        return self.label_of(self.metric)

    def label_of(self, metric: str) -> str:
        """``metric`` with this run's text encoder, the prefix of its unit scores: ``rewrite_spread[minilm]``."""
        from workbench.encoders.text import encoder_label

        return f"{metric}[{encoder_label(self.text_encoder)}]"

    def stored(self, split_id: str, model: str | None, prompt_set: str) -> dict[str, Any]:
        """The config as the run stores (and hashes) it, with the resolved split, model and prompt set. Further
        metrics appear only when there are some (compact, see :meth:`MetricSpec.compact`), so a run of the
        metric alone keeps the id it had before runs could score more."""
        full = {
            **asdict(self),
            "split": split_id,
            "model": model,
            "prompts": prompt_set,
            "system": self.system_for(model),
            "metric_name": self.metric_name,
        }
        del full["more_metrics"]
        if self.more_metrics:
            full["more_metrics"] = [m.compact() for m in self.more_metrics]
        return full

    def system_for(self, model: str | None) -> str:
        """``gat+embedded``, with the shot count of a k-shot model label (``gat+embedded k=3``), the
        candidate count (``N=8``) and the control; the reference rows by their names."""
        if self.reference:
            return REFERENCE_NAMES[self.reference]
        flags = {p[:1]: p[1:] for p in (model or "").split("|")[1:] if p[:1] in ("k", "n") and p[1:].isdigit()}
        return (
            f"{self.encoder}+{self.backend}"
            + (f" k={flags['k']}" if "k" in flags else "")
            + (f" N={flags['n']}" if "n" in flags else "")
            + ("" if self.control == "none" else f" ({self.control} control)")
        )


def score_chunk(payload: dict[str, Any]) -> tuple[list[tuple[str, str, str | None]], list[tuple]]:
    """Score one chunk of users (runs in any executor): ``(unit rows, score rows)``.

    For each user and prompt: ``pref`` of the generic prompt and of the rewrite (hidden liked minus hidden
    negatives: the unseen items the split drew, popularity-matched by default; see
    :mod:`persona.data.splits`), their difference (lift) and the win against the generic prompt; then the
    personal win: the share of the user's partners whose rewrite of the same prompt the user's scores below their own,
    on the user's hidden items (``personal``), the same with the hidden dislikes as the only negatives
    (``personal_dislikes``, users with hidden dislikes only), and the margin over the partners' mean
    (``personal_margin``); then each further metric's unit values from the user's rewrite and the
    partners' (``payload["more_metrics"]``). The history ceiling (``reference: history``) scores one unit
    per user: the centroid of the user's visible likes against each partner's. A user without hidden liked
    items or negatives is skipped with the reason.
    """
    from workbench.encoders.text import load_text_encoder

    enc = load_text_encoder(payload["text_encoder"])
    history = payload.get("reference") == "history"
    pool = (
        _history_pool(enc, payload) if history else {pid: enc.encode(texts) for pid, texts in payload["pool"].items()}
    )
    units, scores = [], []

    def add(unit, name, value, metric=payload["metric"]):
        scores.append((payload["run_id"], unit, f"{metric}.{name}", float(value), enc.model_id))

    for u in payload["users"]:
        ids = [f"{u['user']}|{pid}" for pid in u["prompt_ids"]]
        if not u["liked"] or not u["negatives"]:
            detail = "no hidden liked items" if not u["liked"] else "no hidden negatives"
            units.extend((i, "skipped", detail) for i in ids)
            continue
        score_user = _score_history_user if history else _score_prompts
        units.extend((unit, "scored", None) for unit in score_user(enc, payload, pool, u, ids, add))
    return units, scores


def _history_pool(enc, payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """The history ceiling's "rewrites": each pool user's unit-length centroid of their visible likes."""
    cents = []
    for u in payload["pool_users"]:
        e = enc.encode(payload["history"][u]) if payload["history"][u] else np.zeros((1, 1), np.float32)
        c = e.mean(axis=0)
        cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
    return {"history": np.stack(cents)}


def _hidden(enc, u: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The user's hidden liked, negative and disliked items embedded (no dislikes: ``None``)."""
    return enc.encode(u["liked"]), enc.encode(u["negatives"]), (enc.encode(u["disliked"]) if u["disliked"] else None)


def _score_history_user(enc, payload, pool, u, ids, add) -> list[str]:
    """The history ceiling's one unit of user ``u``: the user's centroid against the partners'."""
    from evalbench.metrics.preference import personal_win, preference_margin

    row = {v: k for k, v in enumerate(payload["pool_users"])}
    le, ne, de = _hidden(enc, u)
    part, me = [row[v] for v in u["partners"]], row[u["user"]]
    everyone = preference_margin(pool["history"], le, ne)
    add(ids[0], "personal", personal_win(everyone[[me]], everyone[part][None, :])[0])
    add(ids[0], "personal_margin", everyone[me] - everyone[part].mean())
    if de is not None:
        d_all = preference_margin(pool["history"], le, de)
        add(ids[0], "personal_dislikes", personal_win(d_all[[me]], d_all[part][None, :])[0])
    return ids[:1]


def _score_prompts(enc, payload, pool, u, ids, add) -> list[str]:
    """User ``u``'s units, one per prompt: the text-preference values, then the further metrics'."""
    from evalbench.metrics import METRICS
    from evalbench.metrics.preference import personal_win, preference_margin, win

    row = {v: k for k, v in enumerate(payload["pool_users"])}
    more = [(METRICS.get(name), label) for name, label in payload.get("more_metrics", [])]
    le, ne, de = _hidden(enc, u)
    part = [row[v] for v in u["partners"]]
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
        for cls, label in more:
            for name, value in cls.score_unit(pool[pid][src], pool[pid][part]).items():
                add(unit, name, value, metric=label)
    return ids


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
    from workbench.store.datasets import dataset_meta

    dataset_id = split_dataset(ws, split_id)
    like = dataset_meta(ws, dataset_id).get("like_threshold")
    return most_liked_titles(ws, split_id, dataset_id, like, n)


def popularity_rewrite(prompt: str, titles: list[str]) -> str:
    """The popularity control's rewrite: the same titles for everyone (``in the spirit of A, B and C``)."""
    head = prompt.strip().rstrip(" .,;:")
    if not titles:
        return head
    names = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
    return f"{head}, in the spirit of {names}"


def run_bench(
    ws: Workspace,
    config: BenchConfig,
    *,
    progress: bool = False,
    executor: str = "local",
    workers: int | None = None,
    chunk_users: int = 8,
) -> dict[str, Any]:
    """Score ``config``'s system on the split's held-out users; resumes an unfinished run of the same config.

    Args:
        executor: ``local`` (in process), ``process`` (a local worker pool) or ``ray``; the scores are the
            same on every executor (see :mod:`workbench.executors`).
        workers: pool size for ``process`` / CPUs for a local Ray cluster.
        chunk_users: users per work unit (each unit is written in one transaction).
    """
    # 1. Resolve inputs: the users, prompts, rewrites, donors and partners.
    inputs = _bench_inputs(ws, config)
    # 2. Start or resume the run.
    full = config.stored(inputs.split_id, inputs.model, inputs.prompt_set)
    units_total = len(inputs.users) * len(inputs.prompts)
    run_id, before = start_run(ws, "bench", full, units_total)
    done = done_units(ws, run_id)
    todo = [u for u in inputs.users if any(f"{u}|{p}" not in done for p, _ in inputs.prompts)]
    result = {
        "run_id": run_id,
        "system": full["system"],
        "resumed": before not in ("new",),
        "units": units_total,
        "units_done_before": len(done),
        "status": "completed",
    }
    if not todo and before == "completed":
        if not metric_results(ws, run_id):  # finished before results were stored
            write_metric_results(ws, run_id, compute_metric_results(ws, run_id, full))
        return {**result, **user_coverage(ws, run_id, full)}
    try:
        # 3. Score the users left, chunk by chunk, on the executor.
        if todo:
            _score_users(
                ws,
                config,
                inputs,
                run_id,
                todo,
                done,
                progress=progress,
                executor=executor,
                workers=workers,
                chunk_users=chunk_users,
                total=units_total,
                desc=f"bench {full['system']}",
            )
        # 4. Each metric over the run's units, stored with the run.
        write_metric_results(ws, run_id, compute_metric_results(ws, run_id, full))
    except BaseException as exc:
        finish_run(ws, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(ws, run_id)
    return {**result, **user_coverage(ws, run_id, full)}


def user_coverage(ws: Workspace, run_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """How many of a run's held-out users it scored, from its stored units: ``{"n_users_heldout",
    "n_users_dropped", "dropped_reasons": {reason: users}}``. A user is dropped when none of their units
    was scored: skipped with the reason (``no hidden liked items``, ``no hidden negatives``: nothing to
    score the user on), or not reached yet (an unfinished run). The held-out users are those the run
    names (image runs), else the split's (the first ``max_users``), else those with units."""
    rows = unit_outcomes(ws, run_id)
    scored = {u for u, status, _, _ in rows if status == "scored"}
    reason: dict[str, str] = {}
    for u, status, detail, _ in rows:
        if status != "scored":
            reason.setdefault(u, detail or status)
    users = config.get("users") or config.get("subjects")
    if not users and config.get("split") and "max_users" in config:
        users = split_users(ws, config["split"], ("heldout",))
        users = users[: config["max_users"]] if config["max_users"] else users
    users = list(dict.fromkeys(users or sorted({r[0] for r in rows})))
    counts: dict[str, int] = {}
    for u in users:
        if u not in scored:
            why = reason.get(u, "not scored yet (the run is unfinished)")
            counts[why] = counts.get(why, 0) + 1
    return {
        "n_users_heldout": len(users),
        "n_users_dropped": sum(counts.values()),
        "dropped_reasons": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _why(reasons: dict[str, int]) -> str:
    return next(iter(reasons)) if len(reasons) == 1 else ", ".join(f"{k} {r}" for r, k in reasons.items())


def dropped_line(coverage: dict[str, Any]) -> str | None:
    """``2 of 61 held-out users not scored: no hidden liked items`` (reasons with their counts when there are
    several), or ``None`` when every held-out user was scored (:func:`user_coverage`)."""
    n = coverage.get("n_users_dropped") or 0
    if not n:
        return None
    return f"{n} of {coverage['n_users_heldout']} held-out users not scored: {_why(coverage['dropped_reasons'])}"


def coverage_text(coverage: dict[str, Any]) -> str:
    """``59 of 61 held-out; 2 not scored: no hidden liked items`` (``189 of 189 held-out`` when none was
    dropped): how many of a run's held-out users it scored (:func:`user_coverage`)."""
    n, total = coverage.get("n_users_dropped") or 0, coverage["n_users_heldout"]
    text = f"{total - n} of {total} held-out"
    return text + (f"; {n} not scored: {_why(coverage['dropped_reasons'])}" if n else "")


@dataclass
class _Inputs:
    """What a bench run scores, resolved from its config and the workspace."""

    split_id: str
    users: list[str]
    prompt_set: str
    model: str | None
    prompts: list[tuple[str, str]]
    rewrites: dict[tuple[str, str], str]
    donor: dict[str, str]
    partners: dict[str, list[str]]


def _bench_inputs(ws: Workspace, config: BenchConfig) -> _Inputs:
    """The held-out users (the first ``max_users``), the prompts and each user's rewrite of each (the
    reference rows make theirs), whose rewrite each user is scored with (another user's in the shuffled
    control) and each user's partners."""
    split_id = resolve_split(ws, config.split)
    users = split_users(ws, split_id, ("heldout",))
    if config.max_users:
        users = users[: config.max_users]
    if not users:
        raise WorkspaceError(f"Split {split_id!r} has no held-out users; make a split with --heldout > 0.")
    if config.reference == "history":
        prompt_set, model, prompts, rewrites = "-", None, [("history", "")], {}
    else:
        prompt_set = register_prompt_set(ws, config.prompts)
        prompts = load_prompts(ws, prompt_set)
        model, rewrites, prompts = _rewrites(ws, config, split_id, prompt_set, users, prompts)
    donor = {u: u for u in users}
    if config.control == "shuffled":
        perm = np.random.default_rng(config.seed).permutation(len(users))
        donor = {users[perm[i]]: users[perm[(i + 1) % len(users)]] for i in range(len(users))}
    partners = partners_of(users, config.partners, config.seed, exclude=donor if config.control == "shuffled" else None)
    return _Inputs(split_id, users, prompt_set, model, prompts, rewrites, donor, partners)


def _rewrites(
    ws: Workspace, config: BenchConfig, split_id: str, prompt_set: str, users: list[str], prompts: list[tuple[str, str]]
) -> tuple[str, dict[tuple[str, str], str], list[tuple[str, str]]]:
    """``(model label, {(user, prompt id): rewrite}, prompts scored)``: the popularity control's, or the stored
    rewrites of the config's system, every held-out user's (an error naming ``pwb rewrite`` when some lack
    them). Prompts ``pwb rewrite`` skipped as too long (no user has a rewrite of them) are not scored; the
    popularity control leaves out the same ones (:func:`prompting.guard.fit_prompts`)."""
    if config.reference == "popularity":
        titles = popular_titles(ws, split_id, config.popular_titles)
        prompts, _ = fit_prompts(prompts)
        return (
            "popular-titles(" + ", ".join(titles) + ")",
            {(u, pid): popularity_rewrite(p, titles) for u in users for pid, p in prompts},
            prompts,
        )
    model = resolve_rewrite_model(
        ws, split_id, config.encoder, config.backend, prompt_set, config.model, prompts=config.prompts
    )
    rewrites = load_rewrites(ws, RewriteKey(split_id, config.encoder, config.backend, model, prompt_set))
    rewritten = {p for _, p in rewrites}
    prompts = [(pid, p) for pid, p in prompts if pid in rewritten]
    lacking = [u for u in users if any((u, p) not in rewrites for p, _ in prompts)]
    if lacking or not prompts:
        raise WorkspaceError(
            f"{len(lacking)} held-out users lack rewrites (e.g. {lacking[0]!r}): run `pwb rewrite "
            f"--split {split_id} --encoder {config.encoder} --backend {config.backend}` first."
        )
    return model, rewrites, prompts


def _score_users(
    ws: Workspace,
    config: BenchConfig,
    inputs: _Inputs,
    run_id: str,
    todo: list[str],
    done: set[str],
    *,
    progress: bool,
    executor: str,
    workers: int | None,
    chunk_users: int,
    total: int,
    desc: str,
) -> None:
    """Score ``todo``'s units not yet ``done`` in chunks of users, each a self-contained payload (texts in,
    score rows out) so any executor can run them; the driver alone writes, one transaction per chunk."""
    from workbench.executors import chunked, get_executor
    from workbench.progress import progress_bar

    items = load_items(ws, split_dataset(ws, inputs.split_id))
    targets = hidden_targets(ws, inputs.split_id, todo)
    shared = _shared_payload(ws, config, inputs, run_id, items)
    payloads = [
        {**shared, "users": _user_payloads(inputs, users_chunk, done, targets, items)}
        for users_chunk in chunked(todo, chunk_users)
    ]
    bar = progress_bar(total=total, initial=len(done), desc=desc, unit="unit", disable=not progress, mininterval=0.2)
    pool = get_executor(executor, workers=workers)
    try:
        for _, (units, scores) in pool.imap(score_chunk, payloads):
            write_units(ws, run_id, units, [Score(*s) for s in scores])
            bar.update(len(units))
    finally:
        pool.close()
    bar.close()


def _item_text(items, item_id: str) -> str:
    return items[item_id].text or items[item_id].title


def _shared_payload(ws: Workspace, config: BenchConfig, inputs: _Inputs, run_id: str, items) -> dict[str, Any]:
    """What every chunk of the run shares: the encoder, the metrics, and the pool of every user's texts
    (rewrites per prompt, or for the history ceiling, the visible likes)."""
    shared: dict[str, Any] = {
        "run_id": run_id,
        "text_encoder": config.text_encoder,
        "metric": config.metric_name,
        "reference": config.reference,
        "pool_users": inputs.users,
    }
    if config.more_metrics:
        shared["more_metrics"] = [(m.name, config.label_of(m.name)) for m in config.more_metrics]
    if config.reference == "history":
        shared["history"] = {
            u: [_item_text(items, i) for i in ids]
            for u, ids in visible_likes(ws, inputs.split_id, inputs.users).items()
        }
    else:
        shared["pool"] = {pid: [inputs.rewrites[(u, pid)] for u in inputs.users] for pid, _ in inputs.prompts}
    return shared


def _user_payloads(
    inputs: _Inputs, users: list[str], done: set[str], targets: dict[str, dict[str, list[str]]], items
) -> list[dict[str, Any]]:
    """Per user of a chunk: the prompts left, whose rewrite is scored as the user's, the hidden items' texts
    (from the split's ``targets``) and the partners."""
    out = []
    for u in users:
        pending = [(pid, p) for pid, p in inputs.prompts if f"{u}|{pid}" not in done]
        t = targets.get(u, {})
        out.append(
            {
                "user": u,
                "prompt_ids": [pid for pid, _ in pending],
                "generic": [p for _, p in pending],
                "source": inputs.donor[u],  # whose rewrite is scored as this user's (another user's in the control)
                "liked": [_item_text(items, i) for i in t.get("liked", [])],
                "negatives": [_item_text(items, i) for i in t.get("unseen", [])],
                "disliked": [_item_text(items, i) for i in t.get("disliked", [])],
                "partners": inputs.partners[u],
            }
        )
    return out


def unit_table(ws: Workspace, run_id: str, metric: str, fields: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The per-unit scores of a bench run's ``metric`` (its label, ``text_preference[minilm]``) as columns:
    ``user``, ``unit`` and each of ``fields`` (default: the text-preference fields), NaN where a unit has
    none (e.g. ``personal_dislikes`` for a user without hidden dislikes)."""
    from evalbench.metrics.preference import TextPreference

    fields = fields or TextPreference.fields
    rows = unit_scores(ws, run_id, [f"{metric}.{f}" for f in fields])
    c = list(zip(*rows)) if rows else [()] * (2 + len(fields))
    out = {"user": np.array(c[0], dtype=object), "unit": np.array(c[1], dtype=object)}
    for k, f in enumerate(fields):
        out[f] = np.array([np.nan if v is None else v for v in c[2 + k]], dtype=float)
    return out


def compute_metric_results(ws: Workspace, run_id: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric of a bench run (``config``: the run's stored config) fed its units' scores through its
    class's ``update`` and ``compute``: ``{metric, encoder, model, aggregation, higher_is_better, result}``
    in the run's metric order, as :func:`workbench.store.runs.write_metric_results` stores them."""
    from evalbench.metrics import METRICS, PRIMARY, MetricSpec
    from workbench.encoders.text import EMBEDDED, encoder_label

    text_encoder = config.get("text_encoder", "minilm")
    out = []
    for spec in [MetricSpec(config.get("metric", PRIMARY))] + [
        MetricSpec.of(m) for m in config.get("more_metrics", [])
    ]:
        cls = METRICS.get(spec.name)
        metric = cls(encoder=encoder_label(text_encoder), aggregation=spec.aggregation)
        t = unit_table(ws, run_id, metric.name, cls.inputs)
        metric.update(users=t["user"], **{f: t[f] for f in cls.inputs})
        out.append(
            {
                "metric": spec.name,
                "encoder": metric.encoder,
                "model": EMBEDDED.get(text_encoder, text_encoder),
                "aggregation": spec.aggregation,
                "higher_is_better": cls.higher_is_better,
                "result": metric.compute(seed=config.get("seed", 0)),
            }
        )
    return out


def visible_likes(ws: Workspace, split_id: str, users: list[str]) -> dict[str, list[str]]:
    """Each user's visible liked item ids (all visible items for a user with no visible like), by id."""
    from workbench.store.datasets import dataset_meta

    like = dataset_meta(ws, split_dataset(ws, split_id)).get("like_threshold")
    out: dict[str, list[str]] = {u: [] for u in users}
    everything: dict[str, list[str]] = {u: [] for u in users}
    for x in visible_interactions(ws, split_id, users):
        everything[x.user_id].append(x.item_id)
        if like is None or x.value is None or x.value >= like:
            out[x.user_id].append(x.item_id)
    return {u: sorted(set(out[u] or everything[u])) for u in users}
