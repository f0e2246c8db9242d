"""What the HTTP API does, as plain Python (no FastAPI here): cold-start personas, stored personas,
rewrites, generation jobs, runs and their scores. :mod:`apps.api.app` is the thin HTTP layer.

The workspace is opened per read and per write through a :class:`~evalbench.store.gate.WorkspaceGate`,
so a running server never locks out ``pwb`` commands or the dashboard for long. The cold-start route
touches no database: the trained encoder, the catalogue and the intake survey are loaded once at start-up
(in a background thread; ``GET /readyz`` says when they are in). Every write a route acknowledges (a new
persona, a job and its images' records) is first appended to the workspace's journal
(:mod:`evalbench.store.journal`, fsynced), and one writer thread applies the journal into DuckDB whenever
the file is free, so a long-held lock delays those writes and never drops them.
"""

from __future__ import annotations

import collections
import logging
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
    """No such persona, run, job, image, catalogue item or survey answer."""


class Conflict(ValueError):
    """The request contradicts what it refers to (two answers to a one-answer survey question)."""


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


class Busy(RuntimeError):
    """The server cannot take this request now (the generation queue is full); ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class JournalWriter:
    """One thread that applies the workspace journal (cold-start personas, job rows) into DuckDB.

    Requests append to the journal (fsynced) before they answer; this thread only moves entries from the
    journal into the workspace, as soon as the file is free. While another process holds it, it keeps
    trying (backing off to ``max_delay_s``) and never gives up: the entries wait on disk, and any later
    read-write open of the workspace (a ``pwb`` command, the next server) applies them too.
    """

    def __init__(self, gate, batch_s: float, max_delay_s: float = 2.0, min_gap_s: float = 0.0):
        self.gate, self.batch_s, self.max_delay_s, self.min_gap_s = gate, batch_s, max_delay_s, min_gap_s
        self.waiting_since: float | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="pwb-journal-writer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def _apply_once(self, wait_s: float | None = None) -> bool:
        """One attempt; ``True`` when the journal is empty afterwards."""
        from evalbench.store.workspace import WorkspaceBusy

        try:
            self.gate.apply_journal(wait_s=wait_s)  # the replay logs what it applied and rejected
        except WorkspaceBusy as exc:
            now = time.monotonic()
            if self.waiting_since is None:
                self.waiting_since = now
                log.warning("journal waits for the workspace", extra={"event": "store_wait", "error": str(exc),
                                                                       "pending": self.gate.journal.pending_count()})
            return False
        except Exception as exc:  # noqa: BLE001 - an I/O fault: logged, retried; the entries stay on disk
            log.error("journal apply failed", extra={"event": "store_error", "error": f"{type(exc).__name__}: {exc}"})
            return False
        if self.waiting_since is not None:
            log.info("journal caught up", extra={"event": "store_resumed", "waited_s": round(time.monotonic() - self.waiting_since, 2)})
            self.waiting_since = None
        return True

    def _loop(self) -> None:
        delay = self.batch_s
        while not self._stop:
            self._wake.wait()
            if self._stop:
                break
            time.sleep(self.batch_s)  # gather a batch
            self._wake.clear()
            t0 = time.perf_counter()
            if self._apply_once():
                delay = self.batch_s
                # under steady load, applying takes at most a fifth of the time (it shares the cores and the
                # GIL with the requests); the entries are on disk and answered from memory meanwhile
                time.sleep(max(self.min_gap_s, min(4 * (time.perf_counter() - t0), 5.0)))
            else:
                self._wake.set()  # try again after a pause
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay_s)

    def close(self, timeout: float = 5.0) -> None:
        """Stop; one last attempt to apply what is pending (what is left stays in the journal)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if not self._apply_once(wait_s=1.0) and self.gate.journal.files():
            log.warning("journal left for the next open", extra={"event": "store_deferred",
                                                                 "pending": self.gate.journal.pending_count()})


class Jobs:
    """Generation jobs: bounded, budgeted, and served fairly by one worker thread.

    * ``submit`` validates every condition (guidance rule names, sizes, the work budget) before the 202,
      refuses with :class:`Busy` (503 + ``Retry-After``) when ``max_queue`` jobs are already waiting, and
      journals the job row (no wait for the workspace);
    * the worker draws one condition at a time, round-robin over the active jobs, so a small job waits
      for at most one condition of a large one, never for the whole large job;
    * finished jobs stay in memory for ``job_ttl_s`` (and at most ``max_finished``), then are read back
      from the workspace; jobs of an earlier process that never finished are marked failed at start-up.
    """

    def __init__(self, service: Service):
        self.service = service
        self.jobs: dict[str, dict[str, Any]] = {}
        self.paths: dict[str, str] = {}  # image sha256 -> file, for images whose records may still be in the journal
        self._active: collections.deque[dict[str, Any]] = collections.deque()
        self._finished: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._backend = None
        self._stop = False
        self._cond_seconds = collections.deque(maxlen=50)  # recent seconds per condition: the Retry-After estimate
        self._worker = threading.Thread(target=self._loop, name="pwb-generate", daemon=True)
        self._worker.start()

    # -- admission -----------------------------------------------------------------------------------
    def validate(self, request: dict[str, Any]) -> list[Any]:
        """The request's :class:`~generation.conditions.UserCondition` list; ``ValueError`` names the field."""
        from generation.conditions import UserCondition

        cfg = self.service.config
        for name in ("height", "width"):
            if request.get(name) and request[name] > cfg.max_side:
                raise ValueError(f"{name}: this server draws at most {cfg.max_side} px a side (pwb serve --max-side)")
        if request.get("steps") is None and cfg.default_steps > cfg.max_steps:
            request["steps"] = cfg.max_steps  # the backend's default would go past this server's limit
        steps = request.get("steps") or cfg.default_steps
        if steps > cfg.max_steps:
            raise ValueError(f"steps: this server takes at most {cfg.max_steps} steps (pwb serve --max-steps)")
        conds = []
        for i, c in enumerate(request["conditions"]):
            if not c["prompt"].strip():
                raise ValueError(f"conditions.{i}.prompt: the prompt is empty")
            cond = UserCondition(user_id=c["user_id"], prompt=c["prompt"], negative_prompt=c.get("negative_prompt"),
                                 seed=c.get("seed", 0), guidance=c.get("guidance", "cfg"),
                                 guidance_scale=c.get("guidance_scale"))
            try:
                cond.make_rule()
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"conditions.{i}.guidance: {exc}") from exc
            conds.append(cond)
        from apps.api.schemas import fits, work_tiers

        h, w = request.get("height") or 96, request.get("width") or 96
        tiers = work_tiers(cfg.max_side, cfg.max_steps, cfg.max_work)
        if not fits(tiers, len(conds), h, w, steps):
            work = job_work(len(conds), h, w, steps)
            allowed = "; ".join(f"up to {t['conditions']} conditions at up to {t['side']} px and {t['steps']} steps"
                                for t in tiers)
            raise ValueError(f"conditions: this job ({len(conds)} x {h}x{w} px x {steps} steps = {work:.1f} "
                             f"megapixel-steps) is over this server's work budget of {cfg.max_work:g} "
                             f"(pwb serve --max-work); a job may have {allowed}. Split it into smaller jobs")
        return conds

    def submit(self, key_id: str | None, request: dict[str, Any]) -> dict[str, Any]:
        conds = self.validate(request)
        cfg = self.service.config
        with self._cond:
            self._expire()
            waiting = sum(1 for j in self._active if j["status"] == "queued")
            if waiting >= cfg.max_queue:
                raise Busy(f"the generation queue is full ({waiting} jobs waiting, pwb serve --max-queue "
                           f"{cfg.max_queue}); retry later", retry_after=self._retry_after())
            now = time.time()
            job = {"job_id": "job-" + uuid.uuid4().hex[:16], "status": "queued", "created_at": now,
                   "started_at": None, "finished_at": None, "error": None, "images": [], "key_id": key_id,
                   "request": request, "_conds": conds, "_next": 0, "_gens": []}
            self._store(job)  # journalled before the 202: raises (nothing queued) if it cannot be
            self.jobs[job["job_id"]] = job
            self._active.append(job)
            self._cond.notify()
        return job

    def _retry_after(self) -> float:
        per = (sum(self._cond_seconds) / len(self._cond_seconds)) if self._cond_seconds else 1.0
        left = sum(len(j["_conds"]) - j["_next"] for j in self._active)
        return max(1.0, min(300.0, per * left))

    def _store(self, job: dict[str, Any]) -> None:
        from evalbench.store.workspace import dumps

        row = {"job_id": job["job_id"], "key_id": job["key_id"], "kind": "generate", "status": job["status"],
               "request": dumps(job["request"]), "result": dumps(job["images"]) if job["finished_at"] else None,
               "error": job["error"], "created_at": _ts(job["created_at"]),
               "finished_at": _ts(job["finished_at"]) if job["finished_at"] else None}
        self.service.gate.journal.append("upsert", {"table": "api_jobs", "row": row})
        if self.service.writer is not None:
            self.service.writer.notify()

    def _expire(self) -> None:
        ttl, cap, now = self.service.config.job_ttl_s, self.service.config.max_finished, time.time()
        while self._finished:
            job_id, at = next(iter(self._finished.items()))
            if now - at <= ttl and len(self._finished) <= cap:
                break
            self._finished.popitem(last=False)
            gone = self.jobs.pop(job_id, None)
            for im in (gone or {}).get("images") or []:
                self.paths.pop(im.get("sha256"), None)

    # -- the worker ----------------------------------------------------------------------------------
    def _backend_for(self):
        if self._backend is None:
            from generation.pipeline import get_backend

            cfg = self.service.config
            kwargs: dict[str, Any] = {"model": cfg.generate_model}
            if cfg.generate_backend == "patch":
                kwargs["pool"] = cfg.pool
            self._backend = get_backend(cfg.generate_backend, **kwargs)
        return self._backend

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._active and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._active.popleft()
            try:
                self._step(job)
            except Exception as exc:  # noqa: BLE001 - the job reports it
                job["_outcome"], job["error"] = "failed", f"{type(exc).__name__}: {exc}"
                log.error("generation job failed", extra={"event": "job_failed", "job_id": job["job_id"], "error": job["error"]})
            if job.get("_outcome"):
                self._finish(job)
            else:
                with self._cond:
                    self._active.append(job)  # round robin: the next job's condition goes first

    def _step(self, job: dict[str, Any]) -> None:
        """Draw the job's next condition."""
        from generation.pipeline import generate, images_dir

        if job["status"] == "queued":
            job["status"], job["started_at"] = "running", time.time()
        cond = job["_conds"][job["_next"]]
        req = job["request"]
        out_dir = images_dir(None, Path(str(self.service.gate.path)).parent / "images")
        t0 = time.perf_counter()
        gens = generate([cond], backend=self._backend_for(), out_dir=out_dir, steps=req.get("steps"),
                        height=req.get("height"), width=req.get("width"), progress=False)
        self._cond_seconds.append(time.perf_counter() - t0)
        job["_gens"].extend(gens)
        job["_next"] += 1
        if job["_next"] == len(job["_conds"]):
            self._record(job)
            for g in job["_gens"]:
                self.paths[g.params.get("image_sha256")] = g.image_path
            job["images"] = [{"user_id": g.user_id, "prompt": c.prompt, "sha256": g.params.get("image_sha256"),
                              "url": f"/v1/images/{g.params.get('image_sha256')}", "generation_id": g.generation_id,
                              "seconds": round(g.latency_s, 4)} for g, c in zip(job["_gens"], job["_conds"])]
            job["_outcome"] = "completed"

    def _record(self, job: dict[str, Any]) -> None:
        from generation.pipeline import record_rows

        journal = self.service.gate.journal
        for table, row in record_rows(job["_conds"], job["_gens"]):
            journal.append("upsert", {"table": table, "row": row})

    def _finish(self, job: dict[str, Any]) -> None:
        """Journal the finished job's row, then show it finished (a client that sees ``completed`` can rely
        on the row and the images' records being on disk)."""
        job.pop("_gens", None)  # the images are on disk; keep only their descriptions
        final = {**job, "status": job.pop("_outcome"), "finished_at": time.time()}
        try:
            self._store(final)
        except Exception as exc:  # noqa: BLE001 - the job stays answerable from memory until it expires
            log.error("job row not journalled", extra={"event": "store_error", "job_id": job["job_id"], "error": str(exc)})
        job["finished_at"], job["status"] = final["finished_at"], final["status"]
        with self._cond:
            self._finished[job["job_id"]] = job["finished_at"]
            self._expire()

    def get(self, job_id: str) -> dict[str, Any]:
        if job_id in self.jobs:
            return self.jobs[job_id]
        from evalbench.store.workspace import loads

        with self.service.gate.reading() as ws:
            rows = ws.query("SELECT status, result, error, epoch(created_at), epoch(finished_at) FROM api_jobs "
                            "WHERE job_id = ?", [job_id])
        if not rows or rows[0][0] in ("queued", "running"):  # its last row may still be in the journal
            row = self._journalled(job_id)
            if row is not None:
                rows = [row]
        if not rows:
            raise NotFound(f"no generation job {job_id!r}")
        status, result, error, created, finished = rows[0]
        if status in ("queued", "running"):  # a job of an earlier server process that never finished
            status, error = "failed", error or ABANDONED
        return {"job_id": job_id, "status": status, "created_at": created, "started_at": None, "finished_at": finished,
                "error": error, "images": loads(result) or []}

    def _journalled(self, job_id: str) -> tuple | None:
        """The job's latest row among the journal's pending entries, as the query above returns it."""
        import datetime as dt

        latest = None
        for e in self.service.gate.journal.pending():
            d = e.get("data") or {}
            if e.get("kind") == "upsert" and d.get("table") == "api_jobs" and (d.get("row") or {}).get("job_id") == job_id:
                latest = d["row"]
        if latest is None:
            return None

        def epoch(ts):
            return None if ts is None else dt.datetime.fromisoformat(ts).replace(tzinfo=dt.timezone.utc).timestamp()

        return (latest["status"], latest.get("result"), latest.get("error"), epoch(latest.get("created_at")),
                epoch(latest.get("finished_at")))

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout=5)


ABANDONED = "the server stopped before this job finished; submit it again"


def job_work(conditions: int, height: int, width: int, steps: int) -> float:
    """A job's work in megapixel-steps: conditions x height x width x steps / 1e6."""
    return conditions * height * width * steps / 1e6


def _ts(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None).isoformat(sep=" ")


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
        self.writer = JournalWriter(gate, config.store_batch_s, min_gap_s=config.store_gap_s)
        from evalbench.store.journal import GroupCommit

        self.commits = GroupCommit(gate.journal)
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
            ctx, ckpt = self._read_split(resolve_split, load_context, checkpoint_path)
            self.error = None
            if not ckpt.exists():
                raise FileNotFoundError(
                    f"no trained {self.config.encoder} model for split {self.split_id!r}: run `pwb personas mine "
                    f"--split {self.split_id} --encoder {self.config.encoder}` first")
            enc = ENCODERS.get(self.config.encoder)(checkpoint=str(ckpt), **self.config.encoder_params).fit(ctx)
            self.cs = ColdStart(enc)
            self.survey = default_survey(ctx)
            self.like = ctx.meta.get("like_threshold")
            self.items = set(ctx.items)
            self._recover()
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

    def _read_split(self, resolve_split, load_context, checkpoint_path):
        """The served split's context and checkpoint path, waiting out another process's hold (visibly)."""
        from evalbench.store.workspace import WorkspaceBusy

        delay = 0.5
        while True:
            try:
                with self.gate.reading() as ws:
                    self.split_id = self._served_split(ws, resolve_split)
                    return (load_context(ws, self.split_id),
                            checkpoint_path(ws, self.split_id, self.config.encoder, self.config.encoder_params))
            except WorkspaceBusy as exc:
                self.error = f"waiting for the workspace: {exc}"
                log.warning("models wait for the workspace", extra={"event": "load_wait", "error": str(exc)})
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _served_split(self, ws, resolve_split) -> str:
        """``--split``, else the split this workspace's server served before (a bench run adding splits
        does not change what a restarted server serves), else the only split."""
        if self.config.split is None:
            rows = ws.query("SELECT value FROM settings WHERE key = 'serve.split'")
            known = {r[0] for r in ws.query("SELECT split_id FROM splits")}
            if rows and rows[0][0] in known:
                return rows[0][0]
        split_id = resolve_split(ws, self.config.split)
        self.gate.journal.append("upsert", {"table": "settings", "row": {"key": "serve.split", "value": split_id}})
        self.writer.notify()
        return split_id

    def _recover(self) -> None:
        """Start-up bookkeeping: personas still in the journal answer from memory; jobs of an earlier
        process that never finished are marked failed (journalled, so it holds even while busy)."""
        from evalbench.store.journal import card_from_dict

        journalled: dict[str, str] = {}  # job id -> its latest status still in the journal
        for e in self.gate.journal.pending():
            d = e.get("data") or {}
            if e.get("kind") == "persona" and d.get("split_id") == self.split_id and d.get("encoder") == self.coldstart_encoder:
                card = card_from_dict(d["card"])
                self.recent[card.user_id] = card
            elif e.get("kind") == "upsert" and d.get("table") == "api_jobs":
                journalled[d["row"]["job_id"]] = d["row"]["status"]
        try:
            with self.gate.reading() as ws:
                stale = ws.query_dicts("SELECT * FROM api_jobs WHERE status IN ('queued', 'running')")
        except Exception as exc:  # noqa: BLE001 - GET /v1/jobs reports such jobs as failed anyway
            log.warning("abandoned jobs not checked", extra={"event": "store_wait", "error": str(exc)})
            return
        stale = [r for r in stale if journalled.get(r["job_id"]) not in ("completed", "failed")]  # finished, not applied yet
        for row in stale:
            row.update(status="failed", error=ABANDONED, finished_at=_ts(time.time()))
            row = {k: (str(v) if k in ("created_at",) and v is not None else v) for k, v in row.items()}
            self.gate.journal.append("upsert", {"table": "api_jobs", "row": row})
        if stale:
            log.info("abandoned jobs marked failed", extra={"event": "jobs_abandoned", "jobs": len(stale)})
            self.writer.notify()

    def close(self) -> None:
        self.jobs.close()
        self.commits.close()
        self.writer.close()

    def _need_ready(self) -> None:
        if not self.ready:
            raise NotReady(self.error or "models are still loading; poll GET /readyz")

    # -- personas ----------------------------------------------------------------------------------
    def coldstart(self, body) -> tuple[Any, list[str], Any]:
        """``(PersonaCard, unknown item ids, future)`` for a ``ColdStartIn`` (the future resolves once the
        persona is on disk; ``None`` when ``store`` is false); ``ValueError`` names the field."""
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
            except ValueError as exc:  # an unknown question or option is not found; two answers to one conflict
                raise (Conflict if "takes one answer" in str(exc) else NotFound)(f"survey_answers: {exc}") from exc
            xs += [Interaction(user_id, i, "survey", self.like) for i in items if i in self.items]
        if not xs:
            raise NotFound("interactions: none of the item ids is in the catalogue"
                             + (f" (unknown: {', '.join(unknown[:5])})" if unknown else "")
                             + "; pass catalogue ids or survey_answers (GET /v1/survey)")
        card = self.cs.persona(user_id, xs, dict(body.attributes), extra_traits=traits or None)
        stored = None
        if body.store:
            from evalbench.store.journal import card_to_dict

            # the caller waits on this before it answers "stored" (group-committed to the journal and fsynced);
            # ValueError (unstorable text) is this request's 422 and nothing is written
            stored = self.commits.submit("persona", {"split_id": self.split_id, "encoder": self.coldstart_encoder,
                                                     "card": card_to_dict(card)})
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
            traits = [{"name": t.name, "weight": float(t.weight)} for t in body.persona.traits]
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
        if sha in self.jobs.paths and Path(self.jobs.paths[sha]).exists():
            return Path(self.jobs.paths[sha])
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
