"""``POST /v1/generate`` (an asynchronous job), ``GET /v1/jobs/{job_id}`` and ``GET /v1/images/{sha256}``."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from apps.api import responses as R
from apps.api import schemas as S
from apps.api.routes.personas import with_body


def job_out(job: dict[str, Any]) -> dict[str, Any]:
    """A job (in memory or read back) as ``JobOut``, with its status URL."""
    return {
        **{k: job.get(k) for k in ("job_id", "status", "created_at", "started_at", "finished_at", "error")},
        "images": job.get("images") or [],
        "status_url": f"/v1/jobs/{job['job_id']}",
    }


def add_routes(app: FastAPI, service, require_key, auth: list, errors: dict, body_errors: dict) -> None:
    """The generation routes; ``GenerateIn`` states this server's limits and work budget."""
    cfg = service.config
    generate_in = S.generate_in(cfg.max_side, cfg.max_steps, cfg.max_work, cfg.default_steps)

    @app.post(
        "/v1/generate",
        response_model=R.JobOut,
        status_code=202,
        tags=["images"],
        summary="Draw images for conditions (an asynchronous job)",
        responses=body_errors,
    )
    @with_body(generate_in)
    def generate(body, request: Request, key=Depends(require_key)):  # noqa: B008 - FastAPI's dependency idiom
        job = service.jobs.submit(key.key_id, body.model_dump())
        return job_out(job)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=R.JobOut,
        dependencies=auth,
        tags=["images"],
        summary="A generation job's status and images",
        responses={**errors, 404: {"model": R.ErrorOut}},
    )
    def job(job_id: str):
        return job_out(service.jobs.get(job_id))

    @app.get(
        "/v1/images/{sha256}",
        dependencies=auth,
        tags=["images"],
        summary="A generated PNG",
        responses={**errors, 404: {"model": R.ErrorOut}, 200: {"content": {"image/png": {}}}},
        response_class=FileResponse,
    )
    def image(
        sha256: str = PathParam(pattern="^[0-9a-f]{64}$", description="The image's content hash (a job's images)."),
    ):
        return FileResponse(service.image_path(sha256), media_type="image/png")
