"""``/healthz`` and ``/readyz`` (no key), and the spec: ``/openapi.json`` and ``/docs`` (a key unless public)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse

from apps.api import responses as R


def add_routes(app: FastAPI, service, spec_deps: list) -> None:
    """Health, readiness and the spec; ``spec_deps`` guard the spec (empty with ``public_docs``)."""
    config = service.config

    @app.get("/healthz", response_model=R.Health, tags=["health"], summary="Liveness (no key needed)")
    async def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=R.Readiness,
        tags=["health"],
        summary="Readiness (no key needed)",
        responses={503: {"model": R.Readiness}},
    )
    async def readyz():
        items = len(service.model.items) if service.model is not None else 0
        body = {
            "ready": service.ready,
            "detail": "ready" if service.ready else (service.error or "loading models"),
            "split": service.split_id,
            "encoder": config.encoder,
            "catalogue_items": items or None,
            "rewriters": list(config.rewriters),
            "generate_backend": config.generate_backend,
        }
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/openapi.json", include_in_schema=False, dependencies=spec_deps)
    async def openapi():
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=spec_deps)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Persona Workbench API")
