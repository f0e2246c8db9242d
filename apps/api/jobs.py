"""The API's generation jobs: a bounded, budgeted queue served round-robin by one worker thread (what a job must
pass before its 202 is :mod:`apps.api.job_admission`; its workspace rows are :mod:`apps.api.job_records`)."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.api.errors import Busy
from apps.api.job_admission import validate_request
from apps.api.job_records import job_row, mark_abandoned, stored_job
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
    def submit(self, key_id: str | None, request: dict[str, Any]) -> dict[str, Any]:
        conds = validate_request(self.service.config, request)
        cfg = self.service.config
        with self._cond:
            self._expire()
            waiting = sum(1 for j in self._active if j["status"] == "queued")
            if waiting >= cfg.max_queue:
                raise Busy(
                    f"the generation queue is full ({waiting} jobs waiting, pwb serve --max-queue "
                    f"{cfg.max_queue}); retry later",
                    retry_after=self._retry_after(),
                )
            now = time.time()
            job = {
                "job_id": "job-" + uuid.uuid4().hex[:16],
                "status": "queued",
                "created_at": now,
                "started_at": None,
                "finished_at": None,
                "error": None,
                "images": [],
                "key_id": key_id,
                "request": request,
                "_conds": conds,
                "_next": 0,
                "_gens": [],
            }
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
        self.service.gate.journal.append("upsert", {"table": "api_jobs", "row": job_row(job)})
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
                log.error(
                    "generation job failed",
                    extra={"event": "job_failed", "job_id": job["job_id"], "error": job["error"]},
                )
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
        gens = generate(
            [cond],
            backend=self._backend_for(),
            out_dir=out_dir,
            steps=req.get("steps"),
            height=req.get("height"),
            width=req.get("width"),
            progress=False,
            signing_dir=Path(str(self.service.gate.path)).parent,
        )
        self._cond_seconds.append(time.perf_counter() - t0)
        job["_gens"].extend(gens)
        job["_next"] += 1
        if job["_next"] == len(job["_conds"]):
            self._record(job)
            for g in job["_gens"]:
                self.paths[g.params.get("image_sha256")] = g.image_path
            job["images"] = [
                {
                    "user_id": g.user_id,
                    "prompt": c.prompt,
                    "sha256": g.params.get("image_sha256"),
                    "file_sha256": g.params.get("file_sha256"),
                    "provenance": g.params.get("provenance"),
                    "url": f"/v1/images/{g.params.get('image_sha256')}",
                    "generation_id": g.generation_id,
                    "seconds": round(g.latency_s, 4),
                }
                for g, c in zip(job["_gens"], job["_conds"])
            ]
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
            log.error(
                "job row not journalled", extra={"event": "store_error", "job_id": job["job_id"], "error": str(exc)}
            )
        job["finished_at"], job["status"] = final["finished_at"], final["status"]
        with self._cond:
            self._finished[job["job_id"]] = job["finished_at"]
            self._expire()

    def get(self, job_id: str) -> dict[str, Any]:
        if job_id in self.jobs:
            return self.jobs[job_id]
        return stored_job(self.service.gate, job_id)

    def recover(self, journalled: dict[str, str]) -> int:
        """Mark failed the jobs an earlier process left queued or running (:func:`mark_abandoned`)."""
        return mark_abandoned(self.service.gate, journalled)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout=5)
