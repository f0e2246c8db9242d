"""What the HTTP API does, as plain Python (no FastAPI here): cold-start personas, stored personas,
rewrites, generation jobs, runs and their scores. :mod:`apps.api.app` is the thin HTTP layer.

The workspace is opened per read and per write through a :class:`~evalbench.store.gate.WorkspaceGate`,
so a running server never locks out ``pwb`` commands or the dashboard for long. The cold-start route
touches no database: the trained encoder, the catalogue and the intake survey are loaded once at start-up
(in a background thread; ``GET /readyz`` says when they are in), new personas are answered from memory
and written in batches by one writer thread.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pwb.api")


class NotReady(RuntimeError):
    """The models are still loading (or failed to load)."""


class NotFound(LookupError):
    """No such persona, run, job or image."""


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
    torch_threads: int = 1
    store_batch_s: float = 0.25
    freeze_gc: bool = False  # `pwb serve` sets it: see Service.load
    key_refresh_s: float = 5.0


class PersonaWriter:
    """One thread that stores cold-start personas in batches (one transaction per batch)."""

    def __init__(self, gate, split_id: str, encoder: str, batch_s: float):
        self.gate, self.split_id, self.encoder, self.batch_s = gate, split_id, encoder, batch_s
        self.q: queue.Queue = queue.Queue()
        self.written = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._loop, name="pwb-persona-writer", daemon=True)
        self._thread.start()

    def put(self, card) -> None:
        self.q.put(card)

    def _loop(self) -> None:
        from evalbench.store.personas import save_personas

        while True:
            first = self.q.get()
            if first is None:
                return
            time.sleep(self.batch_s)  # gather a batch
            batch, stop = {first.user_id: first}, False
            while True:
                try:
                    c = self.q.get_nowait()
                except queue.Empty:
                    break
                if c is None:
                    stop = True
                    break
                batch[c.user_id] = c
            for attempt in range(5):  # the gate already waits 10 s for other processes; then a few more tries
                try:
                    with self.gate.writing() as ws:
                        save_personas(ws, self.split_id, self.encoder, list(batch.values()))
                    self.written += len(batch)
                    break
                except Exception as exc:  # noqa: BLE001 - logged; the cards stay answerable from memory
                    log.warning("persona write failed", extra={"event": "store_retry", "attempt": attempt + 1,
                                                               "error": f"{type(exc).__name__}: {exc}", "cards": len(batch)})
                    time.sleep(0.2 * 2 ** attempt)
            else:
                self.failures += 1
                log.error("persona write gave up", extra={"event": "store_error", "cards": len(batch),
                                                          "users": list(batch)[:20]})
            if stop:
                return

    def close(self, timeout: float = 10.0) -> None:
        self.q.put(None)
        self._thread.join(timeout)


class Jobs:
    """Generation jobs: one worker thread draws, the result rows go to the workspace in one write."""

    def __init__(self, service: Service):
        from concurrent.futures import ThreadPoolExecutor

        self.service = service
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pwb-generate")
        self._backend = None

    def submit(self, key_id: str | None, request: dict[str, Any]) -> dict[str, Any]:
        from evalbench.store.workspace import dumps

        cfg = self.service.config
        for name in ("height", "width"):
            if request.get(name) and request[name] > cfg.max_side:
                raise ValueError(f"{name}: this server draws at most {cfg.max_side} px a side (pwb serve --max-side)")
        if request.get("steps") and request["steps"] > cfg.max_steps:
            raise ValueError(f"steps: this server takes at most {cfg.max_steps} steps (pwb serve --max-steps)")

        job = {"job_id": "job-" + uuid.uuid4().hex[:16], "status": "queued", "created_at": time.time(),
               "finished_at": None, "error": None, "images": []}
        self.jobs[job["job_id"]] = job
        with self.service.gate.writing() as ws:
            with ws.transaction() as con:
                con.execute("INSERT INTO api_jobs (job_id, key_id, kind, status, request) VALUES (?, ?, 'generate', 'queued', ?)",
                            [job["job_id"], key_id, dumps(request)])
        self.pool.submit(self._run, job, request)
        return job

    def _backend_for(self):
        if self._backend is None:
            from generation.pipeline import get_backend

            cfg = self.service.config
            kwargs: dict[str, Any] = {"model": cfg.generate_model}
            if cfg.generate_backend == "patch":
                kwargs["pool"] = cfg.pool
            self._backend = get_backend(cfg.generate_backend, **kwargs)
        return self._backend

    def _run(self, job: dict[str, Any], request: dict[str, Any]) -> None:
        from evalbench.store.workspace import dumps
        from generation.conditions import UserCondition
        from generation.pipeline import generate, images_dir, record

        job["status"] = "running"
        try:
            conds = [UserCondition(user_id=c["user_id"], prompt=c["prompt"], negative_prompt=c.get("negative_prompt"),
                                   seed=c.get("seed", 0), guidance=c.get("guidance", "cfg"),
                                   guidance_scale=c.get("guidance_scale")) for c in request["conditions"]]
            out_dir = images_dir(None, Path(str(self.service.gate.path)).parent / "images")
            gens = generate(conds, backend=self._backend_for(), out_dir=out_dir, steps=request.get("steps"),
                            height=request.get("height"), width=request.get("width"), progress=False)
            with self.service.gate.writing() as ws:
                record(ws, conds, gens)
            job["images"] = [{"user_id": g.user_id, "prompt": c.prompt, "sha256": g.params.get("image_sha256"),
                              "url": f"/v1/images/{g.params.get('image_sha256')}", "generation_id": g.generation_id,
                              "seconds": round(g.latency_s, 4)} for g, c in zip(gens, conds)]
            job["status"] = "completed"
        except Exception as exc:  # noqa: BLE001 - the job reports it
            job["status"], job["error"] = "failed", f"{type(exc).__name__}: {exc}"
            log.error("generation job failed", extra={"event": "job_failed", "job_id": job["job_id"], "error": job["error"]})
        job["finished_at"] = time.time()
        try:
            with self.service.gate.writing() as ws:
                with ws.transaction() as con:
                    con.execute("UPDATE api_jobs SET status = ?, result = ?, error = ?, finished_at = current_timestamp "
                                "WHERE job_id = ?", [job["status"], dumps(job["images"]), job["error"], job["job_id"]])
        except Exception as exc:  # noqa: BLE001
            log.error("job row update failed", extra={"event": "store_error", "error": str(exc)})

    def get(self, job_id: str) -> dict[str, Any]:
        if job_id in self.jobs:
            return self.jobs[job_id]
        from evalbench.store.workspace import loads

        with self.service.gate.reading() as ws:
            rows = ws.query("SELECT status, result, error, epoch(created_at), epoch(finished_at) FROM api_jobs "
                            "WHERE job_id = ?", [job_id])
        if not rows:
            raise NotFound(f"no generation job {job_id!r}")
        status, result, error, created, finished = rows[0]
        if status in ("queued", "running"):  # a job of an earlier server process that never finished
            status, error = "failed", error or "the server stopped before this job finished; submit it again"
        return {"job_id": job_id, "status": status, "created_at": created, "finished_at": finished, "error": error,
                "images": loads(result) or []}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Service:
    """The API's state: see the module docstring."""

    def __init__(self, config: ServiceConfig, gate):
        self.config = config
        self.gate = gate
        self.ready = False
        self.error: str | None = None
        self.split_id: str | None = None
        self.cs = None
        self.survey = None
        self.like: float | None = None
        self.items: set[str] = set()
        self.recent: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.writer: PersonaWriter | None = None
        self.jobs = Jobs(self)
        self._rewriters: dict[str, Any] = {}
        self._rw_lock = threading.Lock()

    @property
    def coldstart_encoder(self) -> str:
        return f"{self.config.encoder}-coldstart"

    # -- start-up ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the split's catalogue and the trained encoder (seconds); sets ``ready`` or ``error``."""
        t0 = time.perf_counter()
        try:
            import torch

            from persona.coldstart import ColdStart, default_survey
            from persona.data.splits import resolve_split
            from persona.mining import checkpoint_path, load_context
            from persona.models import ENCODERS

            torch.set_num_threads(self.config.torch_threads)
            with self.gate.reading() as ws:
                self.split_id = resolve_split(ws, self.config.split)
                ctx = load_context(ws, self.split_id)
                ckpt = checkpoint_path(ws, self.split_id, self.config.encoder, self.config.encoder_params)
            if not ckpt.exists():
                raise FileNotFoundError(
                    f"no trained {self.config.encoder} model for split {self.split_id!r}: run `pwb personas mine "
                    f"--split {self.split_id} --encoder {self.config.encoder}` first")
            enc = ENCODERS.get(self.config.encoder)(checkpoint=str(ckpt), **self.config.encoder_params).fit(ctx)
            self.cs = ColdStart(enc)
            self.survey = default_survey(ctx)
            self.like = ctx.meta.get("like_threshold")
            self.items = set(ctx.items)
            self.writer = PersonaWriter(self.gate, self.split_id, self.coldstart_encoder, self.config.store_batch_s)
            # The catalogue and interactions are millions of long-lived objects: a full garbage collection
            # scanning them stalled requests for ~0.3 s once in a while. Freezing them out of the
            # collector's view (they live as long as the server process) removes those pauses; only for
            # a process that is the server (not in an app embedded in tests or notebooks).
            if self.config.freeze_gc:
                import gc

                gc.collect()
                gc.freeze()
            self.ready = True
            log.info("models loaded", extra={"event": "ready", "seconds": round(time.perf_counter() - t0, 2),
                                             "split": self.split_id, "encoder": self.config.encoder,
                                             "items": len(self.items)})
        except Exception as exc:  # noqa: BLE001 - readiness reports it
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model loading failed", extra={"event": "not_ready", "error": self.error})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.jobs.close()

    def _need_ready(self) -> None:
        if not self.ready:
            raise NotReady(self.error or "models are still loading; poll GET /readyz")

    # -- personas ----------------------------------------------------------------------------------
    def coldstart(self, body) -> tuple[Any, list[str], bool]:
        """``(PersonaCard, unknown item ids, stored)`` for a ``ColdStartIn``; ``ValueError`` names the field."""
        from persona.records import Interaction

        self._need_ready()
        user_id = body.user_id or "cs-" + uuid.uuid4().hex[:12]
        unknown = [x.item_id for x in body.interactions if x.item_id not in self.items]
        xs = [Interaction(user_id, x.item_id, x.kind, x.value if x.value is not None else self.like)
              for x in body.interactions if x.item_id in self.items]
        traits: list[str] = []
        if body.survey_answers:
            try:
                items, traits = self.survey.resolve(body.survey_answers)
            except ValueError as exc:
                raise ValueError(f"survey_answers: {exc}") from exc
            xs += [Interaction(user_id, i, "survey", self.like) for i in items if i in self.items]
        if not xs:
            raise ValueError("interactions: none of the item ids is in the catalogue"
                             + (f" (unknown: {', '.join(unknown[:5])})" if unknown else "")
                             + "; pass catalogue ids or survey_answers (GET /v1/survey)")
        card = self.cs.persona(user_id, xs, dict(body.attributes), extra_traits=traits or None)
        if body.store:
            self.recent[user_id] = card
            self.recent.move_to_end(user_id)
            while len(self.recent) > 100_000:
                self.recent.popitem(last=False)
            self.writer.put(card)
        return card, unknown, bool(body.store)

    def persona(self, user_id: str) -> tuple[Any, str]:
        """``(PersonaCard, "coldstart" | "mined")``: a recent cold start, else the stored cards."""
        if user_id in self.recent:
            return self.recent[user_id], "coldstart"
        from evalbench.store.personas import load_personas
        from persona.data.splits import resolve_split

        with self.gate.reading() as ws:
            split_id = self.split_id or resolve_split(ws, self.config.split)
            from persona.mining import persona_set

            mined = persona_set(self.config.encoder, self.config.encoder_params)
            for encoder, source in ((self.coldstart_encoder, "coldstart"), (mined, "mined")):
                cards = load_personas(ws, split_id, encoder, [user_id])
                if user_id in cards:
                    return cards[user_id], source
        raise NotFound(f"no persona for user {user_id!r}: create one with POST /v1/personas")

    # -- rewrites ----------------------------------------------------------------------------------
    def rewriter(self, backend: str):
        if backend not in self.config.rewriters:
            raise ValueError(f"backend: {backend!r} is not enabled on this server; enabled: "
                             f"{', '.join(self.config.rewriters)} (start it with `pwb serve --rewriter {backend}`)")
        with self._rw_lock:
            if backend not in self._rewriters:
                from prompting.rewriter import Rewriter

                self._rewriters[backend] = Rewriter(backend, self.config.rewriter_models.get(backend))
            return self._rewriters[backend]

    def rewrite(self, body) -> dict[str, Any]:
        from persona.records import PersonaCard
        from prompting.params import RewriteParams

        if body.user_id is not None:
            card, _ = self.persona(body.user_id)
        else:
            traits = []
            for i, t in enumerate(body.persona.traits):
                if not isinstance(t.get("name"), str) or not t["name"].strip():
                    raise ValueError(f"persona.traits[{i}].name: each trait needs a non-empty name")
                w = t.get("weight", 1.0)
                if isinstance(w, bool) or not isinstance(w, (int, float)):
                    raise ValueError(f"persona.traits[{i}].weight must be a number")
                traits.append({"name": t["name"], "weight": float(w)})
            if not body.persona.summary.strip() and not traits:
                raise ValueError("persona: give a summary or at least one trait")
            card = PersonaCard("inline", body.persona.summary, traits)
        rw = self.rewriter(body.backend)
        params = RewriteParams(shots=body.shots, negative=body.negative, seed=body.seed)
        out = rw.rewrite(card, list(body.prompts), params)
        return {"user_id": body.user_id, "backend": body.backend, "model": rw.model,
                "rewrites": [{"prompt": r.prompt, "rewritten": r.rewritten, "negative_prompt": r.negative or "",
                              "fallback": r.fallback or ""} for r in out]}

    # -- runs and images ---------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        from evalbench.store.runs import list_runs

        with self.gate.reading() as ws:
            rows = list_runs(ws)
        return [_run_out(r) for r in rows]

    def scores(self, run_id: str) -> dict[str, Any]:
        from evalbench.report import group_report, leaderboard
        from evalbench.store.runs import list_runs

        with self.gate.reading() as ws:
            run = next((r for r in list_runs(ws) if r["run_id"] == run_id), None)
            if run is None:
                raise NotFound(f"no run {run_id!r} (GET /v1/runs lists them)")
            metrics = [{"metric": m, "units": int(n), "mean": _num(v)} for m, n, v in ws.query(
                "SELECT metric, count(*), avg(value) FROM scores WHERE run_id = ? GROUP BY metric ORDER BY metric", [run_id])]
            board: list[dict[str, Any]] = []
            groups: list[dict[str, Any]] = []
            if run["kind"] == "task":
                from evalbench.taskreport import task_report

                rep = task_report(ws, run_id)
                board = ([{**rep["baseline"], "system": rep["baseline"]["name"], "baseline": True}] if rep.get("baseline") else [])
                board += [{**{k: v for k, v in r.items() if k != "bias"}, **_bias_cols(r.get("bias"))} for r in rep["systems"]]
                groups = [{"system": sys_name, "attribute": a, **g} for sys_name, per in rep["groups"].items()
                          for a, g in per.items()]
            elif run["kind"] == "bench":
                board, groups = leaderboard(ws, [run_id]), group_report(ws, run_id)
        return {"run": _run_out(run), "metrics": metrics, "leaderboard": _clean(board), "groups": _clean(groups)}

    def image_path(self, sha: str) -> Path:
        with self.gate.reading() as ws:
            rows = ws.query("SELECT image_path FROM generations WHERE image_sha256 = ? LIMIT 1", [sha])
        if not rows or not rows[0][0]:
            raise NotFound(f"no image {sha!r}")
        from generation.io import resolve_image_path

        p = resolve_image_path(rows[0][0], self.gate.path)
        if p is None:
            raise NotFound(f"image {sha!r} is recorded but its file {rows[0][0]} is gone")
        return Path(p)


def _num(v: Any) -> float | None:
    import math

    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _clean(v: Any) -> Any:
    """Valid JSON: NaN/inf as null, numpy values as Python ones, anything else unknown as text."""
    import math

    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        return _clean(v.tolist())
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (str, int, bool, type(None))):
        return v
    return str(v)


def _bias_cols(bias: dict[str, Any] | None) -> dict[str, Any]:
    if not bias:
        return {}
    return {"bias_overall": bias.get("overall"), "ipf": bias.get("ipf")}


def _run_out(r: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": r["run_id"], "kind": r["kind"], "status": r["status"],
            "started_at": str(r["started_at"]) if r.get("started_at") else None,
            "ended_at": str(r["ended_at"]) if r.get("ended_at") else None, "n_units": r.get("n_units"),
            "units_done": r.get("units_done"), "config_hash": r.get("config_hash"), "code_version": r.get("code_version")}
