"""``POST /v1/personalize`` (a job: personas, rewrites and signed images for users, cohorts, archetypes or new
users), ``GET /v1/personalize/{job_id}`` and ``GET /v1/personalize/{job_id}/manifest``."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from apps.api import responses as R
from apps.api.personalize_schemas import personalize_in as personalize_schema
from apps.api.routes.personas import with_body


def add_routes(app: FastAPI, service, require_key, auth: list, errors: dict, body_errors: dict) -> None:
    personalize_in = personalize_schema(tuple(service.config.rewriters), service.config.max_side)

    @app.post(
        "/v1/personalize",
        response_model=R.PersonalizeJobOut,
        status_code=202,
        tags=["personalize"],
        summary="Personalize users, cohorts, archetypes or new users (an asynchronous job)",
        responses=body_errors,
    )
    @with_body(personalize_in)
    def personalize(body, key=Depends(require_key)):  # noqa: B008 - FastAPI's dependency idiom
        return service.personalize.submit(body.model_dump())

    @app.get(
        "/v1/personalize/{job_id}",
        response_model=R.PersonalizeJobOut,
        dependencies=auth,
        tags=["personalize"],
        summary="A personalize job's status",
        responses={**errors, 404: {"model": R.ErrorOut}},
    )
    def status(job_id: str):
        return service.personalize.get(job_id)

    @app.get(
        "/v1/personalize/{job_id}/manifest",
        response_model=R.PersonalizeManifestOut,
        dependencies=auth,
        tags=["personalize"],
        summary="A completed personalize job's manifest",
        responses={**errors, 404: {"model": R.ErrorOut}, 409: {"model": R.ErrorOut, "description": "Not completed"}},
    )
    def manifest(job_id: str):
        return {"job_id": job_id, "rows": service.personalize.manifest(job_id)}
