"""What the HTTP API does, as plain Python (no FastAPI here): cold-start personas, stored personas,
rewrites, runs and their scores; generation jobs are :mod:`apps.api.jobs` and start-up is
:mod:`apps.api.startup`. :mod:`apps.api.app` and its routes (:mod:`apps.api.routes`) are the thin HTTP layer.

The workspace is opened per read and per write through a :class:`~workbench.store.gate.WorkspaceGate`,
so a running server never locks out ``pwb`` commands or the dashboard for long. The cold-start route
touches no database: the trained encoder, the catalogue and the intake survey are loaded once at start-up
(in a background thread, by :func:`evalbench.flows.coldstart.load_coldstart`; ``GET /readyz`` says when they
are in). Every write a route acknowledges (a new persona, a job and its images' records) is first
appended to the workspace's journal (:mod:`workbench.store.journal`, fsynced), and one writer thread
(:mod:`apps.api.writer`) applies the journal into DuckDB whenever the file is free, so a long-held lock
delays those writes and never drops them.
"""

from __future__ import annotations

import collections
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.api.errors import Conflict, NotFound, NotReady
from apps.api.jobs import Jobs
from apps.api.personalize_jobs import PersonalizeJobs
from apps.api.responses import clean_json, finite, run_out
from apps.api.startup import load_models
from apps.api.writer import JournalWriter


@dataclass
class ServiceConfig:
    """How a server is set up (``pwb serve`` options)."""

    db: str | None = None
    split: str | None = None
    encoder: str = "gat"
    encoder_params: dict[str, Any] = field(default_factory=dict)
    rewriters: tuple[str, ...] = ("template",)
    rewriter_models: dict[str, str] = field(default_factory=dict)
    generate_backend: str = "patch"
    generate_model: str | None = None
    pool: str = "samples"
    max_side: int = 1024
    max_steps: int = 50
    default_steps: int = 10  # what a job without `steps` is budgeted at (the patch generator's default)
    max_work: float = 200.0  # megapixel-steps a job may ask for (conditions x height x width x steps / 1e6)
    max_queue: int = 64  # jobs waiting before submissions get 503 + Retry-After
    job_ttl_s: float = 3600.0  # finished jobs kept in memory (then read back from the workspace)
    max_finished: int = 2000
    torch_threads: int = 1
    store_batch_s: float = 0.5  # the journal writer gathers this long before it applies a batch
    store_gap_s: float = 2.0  # and then rests at least this long (under load, applying competes for the cores)
    freeze_gc: bool = False  # `pwb serve` sets it: see Service.load
    key_refresh_s: float = 5.0
    busy_wait_s: float = 3.0  # how long a request waits for a workspace another process holds, then 503


class Service:
    """The API's state: see the module docstring."""

    def __init__(self, config: ServiceConfig, gate):
        from workbench.store.journal import GroupCommit

        self.config = config
        self.gate = gate
        self.ready = False
        self.error: str | None = None
        self.split_id: str | None = None
        self.model = None  # evalbench.flows.coldstart.ColdStartModel, once loaded
        self.recent: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.writer = JournalWriter(gate, config.store_batch_s, min_gap_s=config.store_gap_s)
        self.commits = GroupCommit(gate.journal)
        self.jobs = Jobs(self)
        self.personalize = PersonalizeJobs(self)
        self._rewriters: dict[str, Any] = {}
        self._rw_lock = threading.Lock()

    @property
    def coldstart_encoder(self) -> str:
        return f"{self.config.encoder}-coldstart"

    # -- start-up ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the split's catalogue and the trained encoder (seconds); sets ``ready`` or ``error``
        (:func:`apps.api.startup.load_models`)."""
        load_models(self)

    def close(self) -> None:
        self.jobs.close()
        self.personalize.close()
        self.commits.close()
        self.writer.close()

    def need_ready(self):
        """The loaded :class:`~evalbench.flows.coldstart.ColdStartModel`; :class:`NotReady` until then."""
        if not self.ready:
            raise NotReady(self.error or "models are still loading; poll GET /readyz")
        return self.model

    # -- personas ----------------------------------------------------------------------------------
    def coldstart(self, body) -> tuple[Any, list[str], Any]:
        """``(PersonaCard, unknown item ids, future)`` for a ``ColdStartIn`` (the future resolves once the
        persona is on disk; ``None`` when ``store`` is false); ``ValueError`` names the field."""
        model = self.need_ready()
        user_id = body.user_id or "cs-" + uuid.uuid4().hex[:12]
        xs, unknown = model.interactions(user_id, [(x.item_id, x.kind, x.value) for x in body.interactions])
        traits: list[str] = []
        if body.survey_answers:
            try:
                answered, traits = model.answered(user_id, body.survey_answers)
            except ValueError as exc:  # an unknown question or option is not found; two answers to one conflict
                raise (Conflict if "takes one answer" in str(exc) else NotFound)(f"survey_answers: {exc}") from exc
            xs += answered
        if not xs:
            raise NotFound(
                "interactions: none of the item ids is in the catalogue"
                + (f" (unknown: {', '.join(unknown[:5])})" if unknown else "")
                + "; pass catalogue ids or survey_answers (GET /v1/survey)"
            )
        card = model.maker.persona(user_id, xs, dict(body.attributes), extra_traits=traits or None)
        stored = None
        if body.store:
            from workbench.store.journal import card_to_dict

            # the caller waits on this before it answers "stored" (group-committed to the journal and fsynced);
            # ValueError (unstorable text) is this request's 422 and nothing is written
            stored = self.commits.submit(
                "persona", {"split_id": self.split_id, "encoder": self.coldstart_encoder, "card": card_to_dict(card)}
            )
        return card, unknown, stored

    def remember(self, card) -> None:
        """A cold-start persona now on disk: answer it from memory until the workspace has it."""
        self.recent[card.user_id] = card
        self.recent.move_to_end(card.user_id)
        while len(self.recent) > 100_000:
            self.recent.popitem(last=False)
        self.writer.notify()

    def persona(self, user_id: str) -> tuple[Any, str]:
        """``(PersonaCard, "coldstart" | "mined")``: a recent cold start, else the stored cards."""
        if user_id in self.recent:
            return self.recent[user_id], "coldstart"
        from persona.mining import persona_set
        from workbench.store.personas import load_personas
        from workbench.store.splits import resolve_split

        with self.gate.reading() as ws:
            split_id = self.split_id or resolve_split(ws, self.config.split)
            mined = persona_set(self.config.encoder, self.config.encoder_params)
            for encoder, source in ((self.coldstart_encoder, "coldstart"), (mined, "mined")):
                cards = load_personas(ws, split_id, encoder, [user_id])
                if user_id in cards:
                    return cards[user_id], source
        raise NotFound(f"no persona for user {user_id!r}: create one with POST /v1/personas")

    # -- rewrites ----------------------------------------------------------------------------------
    def rewriter(self, backend: str):
        if backend not in self.config.rewriters:
            raise ValueError(
                f"backend: {backend!r} is not enabled on this server; enabled: "
                f"{', '.join(self.config.rewriters)} (start it with `pwb serve --rewriter {backend}`)"
            )
        with self._rw_lock:
            if backend not in self._rewriters:
                from prompting.rewriter import Rewriter

                self._rewriters[backend] = Rewriter(backend, self.config.rewriter_models.get(backend))
            return self._rewriters[backend]

    def rewrite(self, body) -> dict[str, Any]:
        from prompting.params import RewriteParams
        from workbench.records import PersonaCard

        if body.user_id is not None:
            card, _ = self.persona(body.user_id)
        else:
            traits = [{"name": t.name, "weight": float(t.weight)} for t in body.persona.traits]
            card = PersonaCard(user_id="inline", summary=body.persona.summary, traits=traits)
        rw = self.rewriter(body.backend)
        params = RewriteParams(shots=body.shots, negative=body.negative, seed=body.seed)
        ids, prompts = self.request_prompts(body)
        out = rw.rewrite(card, prompts, params)
        return {
            "user_id": body.user_id,
            "backend": body.backend,
            "model": rw.model,
            "prompt_set": body.prompt_set,
            "rewrites": [
                {
                    "prompt_id": pid,
                    "prompt": r.prompt,
                    "rewritten": r.rewritten,
                    "negative_prompt": r.negative or "",
                    "fallback": r.fallback or "",
                }
                for pid, r in zip(ids, out)
            ],
        }

    def request_prompts(self, body) -> tuple[list[str | None], list[str]]:
        """``(prompt ids, prompts)`` of a rewrite request: its own list (no ids), or a prompt set's, read from the
        workspace (stored or bundled; ``prompt_ids`` picks), at most :data:`MAX_REWRITE_PROMPTS`."""
        from apps.api.schemas import MAX_REWRITE_PROMPTS
        from workbench.store.prompts import read_prompt_set

        if body.prompt_set is None:
            return [None] * len(body.prompts), list(body.prompts)
        from workbench.errors import DataError

        with self.gate.reading() as ws:
            try:
                rows = read_prompt_set(ws, body.prompt_set)
            except DataError as exc:  # a name the workspace lacks: not found, like an unknown user
                raise NotFound(f"prompt_set: {exc.message}. {exc.fix}") from None
        if body.prompt_ids is not None:
            have = dict(rows)
            missing = [p for p in body.prompt_ids if p not in have]
            if missing:
                raise NotFound(
                    f"prompt_ids: prompt set {body.prompt_set!r} has no prompt {missing[0]!r} "
                    f"({len(missing)} missing; its ids run {rows[0][0]} .. {rows[-1][0]})"
                )
            rows = [(p, have[p]) for p in dict.fromkeys(body.prompt_ids)]
        if len(rows) > MAX_REWRITE_PROMPTS:
            raise ValueError(
                f"prompt_set: {body.prompt_set!r} holds {len(rows)} prompts and a request rewrites at most "
                f"{MAX_REWRITE_PROMPTS}: pick them with prompt_ids (or run `pwb rewrite --prompts "
                f"{body.prompt_set}` for the whole set)"
            )
        return [r[0] for r in rows], [r[1] for r in rows]

    # -- runs and images ---------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        from workbench.store.runs import list_runs

        with self.gate.reading() as ws:
            rows = list_runs(ws)
        return [run_out(r) for r in rows]

    def scores(self, run_id: str) -> dict[str, Any]:
        from evalbench.flows.reports import run_scores

        with self.gate.reading() as ws:
            res = run_scores(ws, run_id)
        if res is None:
            raise NotFound(f"no run {run_id!r} (GET /v1/runs lists them)")
        metrics = [{**m, "mean": finite(m["mean"])} for m in res["metrics"]]
        return {
            "run": run_out(res["run"]),
            "metrics": metrics,
            "leaderboard": clean_json(res["leaderboard"]),
            "groups": clean_json(res["groups"]),
        }

    def image_path(self, sha: str) -> Path:
        if sha in self.jobs.paths and Path(self.jobs.paths[sha]).exists():
            return Path(self.jobs.paths[sha])
        from workbench.images import resolve_image_path
        from workbench.store.generations import image_file

        with self.gate.reading() as ws:
            recorded = image_file(ws, sha)
        if recorded is None:
            raise NotFound(f"no image {sha!r}")
        p = resolve_image_path(recorded, self.gate.path)
        if p is None:
            raise NotFound(f"image {sha!r} is recorded but its file {recorded} is gone")
        return Path(p)
