"""The API's generation jobs: a bounded, budgeted queue served round-robin by one worker thread."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.api.errors import Busy, NotFound
from apps.api.logs import log

if TYPE_CHECKING:
    from apps.api.service import Service


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
        from workbench.store.workspace import dumps

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
        from workbench.store.jobs import job_status
        from workbench.store.workspace import loads

        with self.service.gate.reading() as ws:
            row = job_status(ws, job_id)
        if row is None or row[0] in ("queued", "running"):  # its last row may still be in the journal
            row = self._journalled(job_id) or row
        if row is None:
            raise NotFound(f"no generation job {job_id!r}")
        status, result, error, created, finished = row
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
            return None if ts is None else dt.datetime.fromisoformat(ts).replace(tzinfo=dt.UTC).timestamp()

        return (latest["status"], latest.get("result"), latest.get("error"), epoch(latest.get("created_at")),
                epoch(latest.get("finished_at")))

    def recover(self, journalled: dict[str, str]) -> int:
        """Mark failed (journalled, so it holds even while the workspace is busy) the jobs an earlier process
        left queued or running; ``journalled`` maps job ids to their latest status still in the journal.
        Returns how many were marked."""
        from workbench.store.jobs import unfinished_jobs

        with self.service.gate.reading() as ws:
            stale = unfinished_jobs(ws)
        stale = [r for r in stale if journalled.get(r["job_id"]) not in ("completed", "failed")]  # finished, not applied yet
        for row in stale:
            row.update(status="failed", error=ABANDONED, finished_at=_ts(time.time()))
            row = {k: (str(v) if k in ("created_at",) and v is not None else v) for k, v in row.items()}
            self.service.gate.journal.append("upsert", {"table": "api_jobs", "row": row})
        return len(stale)

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
