"""``POST /v1/personalize`` jobs: :mod:`evalbench.flows.personalize` run by one worker thread, one job at a time.

A job's folder is ``<workspace dir>/personalize/<job id>/`` (the request, then everything ``pwb personalize``
writes there). The plan (cohorts, archetypes, rewrites) runs under the workspace's write lock, for seconds;
the drawing runs without it and hands each image's generation rows to the journal (:mod:`apps.api.writer`
applies them), so ``pwb verify --db`` and ``GET /v1/images/{sha256}`` find the images. A finished job's
``run.json`` answers for it after a restart; one a stopped server left unfinished reads ``failed``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.api.errors import Busy, Conflict, NotFound
from apps.api.logs import log

if TYPE_CHECKING:
    from apps.api.service import Service

PUBLIC = ("job_id", "status", "created_at", "started_at", "finished_at", "error", "images", "drawn", "timings_s")


class PersonalizeJobs:
    """Queued personalize jobs and their one worker thread (see the module docstring)."""

    def __init__(self, service: Service):
        self.service = service
        self.jobs: dict[str, dict[str, Any]] = {}
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._backend = None
        self._worker = threading.Thread(target=self._loop, name="pwb-personalize", daemon=True)
        self._worker.start()

    @property
    def root(self) -> Path:
        return Path(str(self.service.gate.path)).resolve().parent / "personalize"

    # -- the routes' side ----------------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        cfg = self.service.config
        if body["rewriter"] not in cfg.rewriters:
            raise ValueError(
                f"rewriter: {body['rewriter']!r} is not enabled on this server; enabled: {', '.join(cfg.rewriters)} "
                f"(start it with `pwb serve --rewriter {body['rewriter']}`)"
            )
        if body["size"] > cfg.max_side:
            raise ValueError(f"size: at most {cfg.max_side} px on this server (pwb serve --max-side)")
        with self._cond:
            if len(self._queue) >= cfg.max_queue:
                raise Busy(
                    f"the personalize queue is full ({len(self._queue)} jobs waiting); retry later", retry_after=30
                )
            job_id = "pz-" + uuid.uuid4().hex[:16]
            out = self.root / job_id
            out.mkdir(parents=True, exist_ok=False)
            (out / "request.json").write_text(json.dumps(body, indent=2, sort_keys=True))
            job = {"job_id": job_id, "status": "queued", "created_at": time.time(), "started_at": None}
            job |= {"finished_at": None, "error": None, "images": None, "drawn": 0, "timings_s": {}, "request": body}
            self.jobs[job_id] = job
            self._queue.append(job)
            self._cond.notify()
        return self.public(job)

    def public(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {k: job.get(k) for k in PUBLIC}
        out["status_url"] = f"/v1/personalize/{job['job_id']}"
        out["manifest_url"] = f"/v1/personalize/{job['job_id']}/manifest" if job["status"] == "completed" else None
        return out

    def get(self, job_id: str) -> dict[str, Any]:
        """A job in memory, else read back from its folder (a finished job of an earlier process)."""
        if job_id in self.jobs:
            return self.public(self.jobs[job_id])
        folder = self.root / job_id
        if not job_id.startswith("pz-") or "/" in job_id or not (folder / "request.json").is_file():
            raise NotFound(f"no personalize job {job_id!r}")
        run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        done = run.get("status") == "completed"
        job = {
            "job_id": job_id,
            "status": "completed" if done else "failed",
            "created_at": (folder / "request.json").stat().st_mtime,
            "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"),
            "error": None if done else "the server stopped before this job finished; submit it again",
            "images": run.get("images"),
            "drawn": run.get("drawn", 0) + run.get("reused", 0),
            "timings_s": run.get("timings_s") or {},
        }
        return self.public(job)

    def manifest(self, job_id: str) -> list[dict[str, Any]]:
        """The finished job's manifest rows, each with the URL of its image."""
        from apps.api.responses import clean_json
        from workbench.store.files import parquet_rows

        job = self.get(job_id)
        if job["status"] != "completed":
            raise Conflict(f"personalize job {job_id!r} is {job['status']}: its manifest comes when it completes")
        rows = [r for _, r in parquet_rows(self.root / job_id / "manifest.parquet", [])]
        return [clean_json({**r, "url": f"/v1/images/{r['content_sha256']}"}) for r in rows]

    # -- the worker ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._queue.popleft()
            try:
                self._run(job)
                job["status"] = "completed"
            except Exception as exc:  # noqa: BLE001 - the job reports it
                job["status"], job["error"] = "failed", f"{type(exc).__name__}: {exc}"
                log.error("personalize job failed", extra={"event": "job_failed", "job_id": job["job_id"]})
            job["finished_at"] = time.time()

    def _run(self, job: dict[str, Any]) -> None:
        """Plan under the write lock, draw without it, journal the rows."""
        from evalbench.flows.personalize import execute, plan
        from generation.pipeline import get_backend

        job["status"], job["started_at"] = "running", time.time()
        cfg = self._config(job)
        with self.service.gate.writing() as ws:
            p = plan(ws, cfg, progress=False)
        job["images"] = len(p.jobs)
        if self._backend is None:
            sc = self.service.config
            kwargs = {"pool": sc.pool} if sc.generate_backend == "patch" else {}
            self._backend = get_backend(sc.generate_backend, model=sc.generate_model, **kwargs)

        def drawn(_row) -> None:
            job["drawn"] += 1

        run = execute(
            p,
            record=self._record,
            progress=False,
            backend=self._backend,
            on_image=drawn,
            should_stop=lambda: self._stop,
        )
        job["timings_s"] = run["timings_s"]

    def _config(self, job: dict[str, Any]):
        from apps.api.personalize_schemas import PERSONALIZE_LIMITS
        from evalbench.flows.personalize import PersonalizeConfig
        from persona.mining import persona_set

        body, sc = job["request"], self.service.config
        out = self.root / job["job_id"]
        prompts = body.get("prompt_set")
        if body.get("prompts"):
            path = out / f"{job['job_id']}.txt"  # stored as prompt set <job id>
            path.write_text("".join(p.replace("\n", " ").strip() + "\n" for p in body["prompts"]))
            prompts = str(path)
        return PersonalizeConfig(
            prompts=prompts,
            out=str(out),
            users=list(body.get("users") or []),
            cohorts=[(c["name"], c.get("where")) for c in body.get("cohorts") or []],
            archetypes=body.get("archetypes"),
            new_users={u["user_id"]: list(u["items"]) for u in body.get("new_users") or []},
            split=self.service.split_id,
            encoder=persona_set(sc.encoder, sc.encoder_params),
            rewriter=body["rewriter"],
            rewriter_model=sc.rewriter_models.get(body["rewriter"]),
            candidates=body["candidates"],
            generator="patch" if sc.generate_backend == "patch" else "diffusers",
            model=sc.generate_model,
            pool=sc.pool,
            images=body["images"],
            size=body["size"],
            seed=body["seed"],
            baseline=body["baseline"],
            max_prompts=PERSONALIZE_LIMITS["prompts"],
        )

    def _record(self, rows) -> None:
        journal = self.service.gate.journal
        for table, row in rows:
            journal.append("upsert", {"table": table, "row": row})
        if self.service.writer is not None:
            self.service.writer.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout=10)
