"""Rewrite prompts from each user's persona: one interface over every backend, cached, and the stored stage."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Any

from prompting.backends import BACKENDS
from prompting.backends.base import RewriteRequest
from prompting.guard import MAX_PROMPT_CHARS, fit_prompts, validate_rewrite
from prompting.params import RewriteParams
from workbench.records import PersonaCard, Rewrite
from workbench.store.datasets import load_items
from workbench.store.personas import load_personas
from workbench.store.prompts import load_prompts, register_prompt_set
from workbench.store.rewrites import (
    RewriteKey,
    cache_rewrites,
    cached_rewrites,
    save_user_rewrites,
    users_with_rewrites,
)
from workbench.store.splits import resolve_split, split_dataset, split_users
from workbench.store.workspace import Workspace, WorkspaceError


def persona_hash(card: PersonaCard) -> str:
    """A digest of everything in a card a rewriter can see (not its embedding)."""
    blob = json.dumps(
        {
            "summary": card.summary,
            "traits": card.traits,
            "demographics": card.demographics,
            "evidence": [(e.item_id, e.weight, e.snippet) for e in card.evidence],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def history_of(card: PersonaCard) -> list[str]:
    """The user's own items for k-shot prompts: evidence titles, most telling first
    (:func:`persona.evidence.snippet_title`)."""
    from persona.evidence import snippet_title

    return [snippet_title(e.snippet) for e in card.evidence if e.snippet]


class Rewriter:
    """``Rewriter(backend, model=None, **backend_options).rewrite(personas, prompts, params=None)``.

    Args:
        backend: A registered backend name: ``template``, ``embedded``, ``transformers``, ``vllm``, ``openai``.
        model: The backend's model (GGUF path, model id or served name); ``None``: the backend's default.
        workspace: A :class:`~workbench.store.Workspace` whose cache answers repeated requests for free.
        selector: Picks one of ``params.candidates`` rewrites per pair and scores every kept rewrite
            (default :class:`~prompting.select.TfidfHistorySelector` with each card's own IDF; never the
            benchmark's text encoder).
        **backend_options: Passed to the backend's constructor (``base_url=...``, ``batch_size=...``).

    Example:
        >>> from workbench.records import PersonaCard
        >>> card = PersonaCard("u1", "", traits=[{"name": "Film-Noir", "weight": 0.4}])
        >>> Rewriter("template").rewrite([card], ["a cat on a stairway"])[0].rewritten
        'a cat on a stairway, film-noir shadows in black and white'
    """

    def __init__(
        self,
        backend: str = "template",
        model: str | None = None,
        *,
        workspace: Workspace | None = None,
        selector=None,
        **backend_options: Any,
    ):
        from prompting.select import TfidfHistorySelector

        self.backend_name = backend
        self.selector = selector or TfidfHistorySelector()
        cls = BACKENDS.get(backend)
        if model is not None:
            if backend == "template":
                raise ValueError("model: the template backend has no model; drop --model or pick an LLM backend")
            backend_options["model"] = model
        self.backend = cls(**backend_options)
        self.workspace = workspace
        self.stats = {"requests": 0, "cached": 0, "fallbacks": 0}

    @property
    def model(self) -> str:
        return self.backend.model

    def rewrite(
        self,
        personas: PersonaCard | list[PersonaCard],
        prompts: str | list[str],
        params: RewriteParams | list[RewriteParams] | None = None,
        *,
        history: list[list[str]] | None = None,
    ) -> list[Rewrite]:
        """Rewrite pairs ``(personas[i], prompts[i])`` (a single persona or prompt is broadcast).

        ``params``: one :class:`RewriteParams` for all, or a list of equal length. ``history``: the
        user's own items per pair for k-shot prompts (default: the persona's evidence titles).
        """
        personas = [personas] if isinstance(personas, PersonaCard) else list(personas)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        n = max(len(personas), len(prompts))
        if len(personas) == 1:
            personas = personas * n
        if len(prompts) == 1:
            prompts = prompts * n
        if len(personas) != len(prompts):
            raise ValueError(
                f"personas and prompts must have equal lengths (or one of them length 1), "
                f"got {len(personas)} and {len(prompts)}"
            )
        if params is None or isinstance(params, RewriteParams):
            plist = [params or RewriteParams()] * n
        else:
            plist = list(params)
            if len(plist) != n:
                raise ValueError(f"params must be one RewriteParams or a list of {n}, got a list of {len(plist)}")
            bad = [i for i, p in enumerate(plist) if not isinstance(p, RewriteParams)]
            if bad:
                raise TypeError(f"params[{bad[0]}] must be a RewriteParams, got {type(plist[bad[0]]).__name__}")
        if history is not None and len(history) != n:
            raise ValueError(f"history must have one entry per pair ({n}), got {len(history)}")
        hist = history or [history_of(p) for p in personas]
        reqs = [RewriteRequest(p, q, h) for p, q, h in zip(personas, prompts, hist)]
        keys = [self._key(r, pp) for r, pp in zip(reqs, plist)]
        cached = self._cache_get(keys)
        out: list[Rewrite | None] = [cached.get(k) for k in keys]
        groups: dict[RewriteParams, list[int]] = {}
        for i, r in enumerate(out):
            if r is None:
                groups.setdefault(plist[i], []).append(i)
        fresh = []
        for pp, idx in groups.items():
            t0 = time.perf_counter()
            batch = [reqs[i] for i in idx]
            if pp.candidates > 1:
                candidates = self.backend.candidates_batch(batch, pp, pp.candidates)
            else:
                candidates = [[r] for r in self.backend.rewrite_batch(batch, pp)]
            per = (time.perf_counter() - t0) / max(1, len(idx))
            for i, cands in zip(idx, candidates):
                # the model's own outputs compete; its template fallbacks only when every candidate fell back
                cands = [c for c in cands if not c.fallback] or cands
                texts = [validate_rewrite(c.rewritten) for c in cands]
                k, score = self.selector.choose(reqs[i].persona, reqs[i].prompt, texts)
                res = cands[k]
                out[i] = Rewrite(
                    reqs[i].persona.user_id,
                    reqs[i].prompt,
                    texts[k],
                    res.negative,
                    self.backend_name,
                    self.model,
                    min(pp.shots, len(reqs[i].history)),
                    per,
                    fallback=res.fallback,
                    selector_score=round(score, 6),
                )
                fresh.append((keys[i], pp, reqs[i], out[i]))
        self._cache_put(fresh)
        self.stats["requests"] += n
        self.stats["cached"] += n - len(fresh)
        self.stats["fallbacks"] += sum(1 for *_, r in fresh if r.fallback)
        return out  # type: ignore[return-value]

    def rewrite_many(
        self,
        pairs: list[tuple[PersonaCard, str]],
        history: list[list[str]] | None = None,
        params: RewriteParams | None = None,
    ) -> list[Rewrite]:
        """``rewrite`` over ``(persona, prompt)`` pairs."""
        return self.rewrite([p for p, _ in pairs], [q for _, q in pairs], params, history=history)

    # -- cache ---------------------------------------------------------------------------------------
    def _key(self, req: RewriteRequest, params: RewriteParams) -> str:
        blob = json.dumps(
            [
                self.backend_name,
                self.model,
                asdict(params),
                persona_hash(req.persona),
                req.prompt,
                req.history[: params.shots],
            ],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_get(self, keys: list[str]) -> dict[str, Rewrite]:
        return {} if self.workspace is None else cached_rewrites(self.workspace, keys)

    def _cache_put(self, fresh) -> None:
        if self.workspace is not None:
            cache_rewrites(self.workspace, {k: (asdict(pp), r) for k, pp, _, r in fresh})


def rewrite_split(
    ws: Workspace,
    split: str | None = None,
    *,
    encoder: str = "tfidf",
    backend: str = "template",
    prompts: str = "parti36",
    roles: tuple[str, ...] = ("heldout",),
    progress: bool = False,
    model: str | None = None,
    params: RewriteParams | None = None,
    backend_kwargs: dict[str, Any] | None = None,
    batch_requests: int = 64,
    max_users: int | None = None,
    long_prompts: str = "skip",
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> dict[str, Any]:
    """Rewrite every prompt of ``prompts`` for every user in ``roles``; stored per user, resumable, cached.

    Prompts over ``max_prompt_chars`` are skipped (their ids in ``skipped_prompts``) or, with
    ``long_prompts="truncate"``, cut at a word boundary (:func:`prompting.guard.fit_prompts`).

    ``batch_requests``: about how many (user, prompt) requests go to the backend in one call.
    ``max_users``: only the first this many users (by id), e.g. for a slow LLM (benchmark them with
    ``BenchConfig(max_users=...)``).

    The stored model label carries every setting that differs from the defaults
    (:meth:`RewriteParams.label`, e.g. ``<model>|k3`` for 3-shot), so 0-shot and k-shot rewrites of the
    same model sit side by side, the benchmark can compare them, and a re-run with other settings is
    not mistaken for one already done.
    """
    from prompting.select import TfidfHistorySelector

    # 1. the rewriter, the prompts (long ones skipped or cut) and the users' personas
    params = params or RewriteParams()
    split_id = resolve_split(ws, split)
    # the selector's IDF comes from the item catalogue (public, the same for every user and every run)
    catalogue = [f"{it.title}. {it.text}" for it in load_items(ws, split_dataset(ws, split_id)).values()]
    rw = Rewriter(backend, model, workspace=ws, selector=TfidfHistorySelector(catalogue), **(backend_kwargs or {}))
    label = rw.model + params.label()
    prompt_set = register_prompt_set(ws, prompts)
    plist, skipped = fit_prompts(load_prompts(ws, prompt_set), max_chars=max_prompt_chars, long_prompts=long_prompts)
    if not plist:
        raise ValueError(
            f"every prompt of {prompt_set!r} is longer than {max_prompt_chars} characters: pass "
            "long_prompts='truncate' (CLI: --long-prompts truncate) or a larger max_prompt_chars"
        )
    users = split_users(ws, split_id, roles)
    if max_users:
        users = users[:max_users]
    cards = load_personas(ws, split_id, encoder, users)
    missing = [u for u in users if u not in cards]
    if missing:
        raise WorkspaceError(
            f"{len(missing)} of {len(users)} users have no {encoder} persona in split {split_id!r} "
            f"(e.g. {missing[0]!r}): run `pwb personas mine --split {split_id} --encoder {encoder}` first."
        )
    # 2. rewrite the users not done yet, several users per backend call, each user stored alone
    key = RewriteKey(split_id, encoder, backend, label, prompt_set)
    done = users_with_rewrites(ws, key, len(plist))
    todo = [u for u in users if u not in done]
    from workbench.progress import progress_bar

    fallbacks = 0
    # Several users per call, so batching backends (vLLM, llama.cpp slots) see at least ~64 requests at once;
    # each user's rows are still written in their own transaction, so an interrupted run resumes per user.
    per_call = max(1, batch_requests // max(1, len(plist)))
    bar = progress_bar(total=len(todo), desc=f"rewriting ({backend})", unit="user", disable=not progress)
    for start in range(0, len(todo), per_call):
        chunk = todo[start : start + per_call]
        outs = rw.rewrite([cards[u] for u in chunk for _ in plist], [p for _ in chunk for _, p in plist], params)
        for j, u in enumerate(chunk):
            out = outs[j * len(plist) : (j + 1) * len(plist)]
            fallbacks += sum(1 for r in out if r.fallback)
            save_user_rewrites(ws, key, u, [pid for pid, _ in plist], out)
        bar.update(len(chunk))
    bar.close()
    # 3. what was done
    return {
        "split": split_id,
        "encoder": encoder,
        "backend": backend,
        "model": label,
        "prompts": prompt_set,
        "users": len(users),
        "rewritten": len(todo),
        "already_stored": len(done),
        "requests": len(todo) * len(plist),
        "fallbacks": fallbacks,
        "cached": rw.stats["cached"],
        "skipped_prompts": skipped,
    }
