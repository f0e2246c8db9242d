"""The HTTP API (FastAPI): ``create_app(ServiceConfig(db=...))``, served by ``pwb serve``.

Routes (all but ``/healthz`` and ``/readyz`` need a key: ``Authorization: Bearer pwb_...`` or
``X-API-Key: pwb_...``; keys come from ``pwb keys create``), one module each under :mod:`apps.api.routes`:

* ``POST /v1/personas``: cold start, a persona for a new user from a few interactions and/or intake
  answers, in one pass of the trained graph encoder (no LLM); ``GET /v1/survey`` lists the intake questions;
* ``GET /v1/personas/{user_id}``: a stored persona (cold-start or mined);
* ``POST /v1/rewrite``: a persona (by user id, or inline) and prompts -> rewritten prompts;
* ``POST /v1/generate``: conditions -> an asynchronous job (202 with its status URL);
  ``GET /v1/jobs/{job_id}``; ``GET /v1/images/{sha256}``;
* ``GET /v1/runs``, ``GET /v1/runs/{run_id}/scores``: benchmark runs and their scores;
* ``POST /v1/personalize``: users, cohorts, archetypes or new users and prompts -> a job (202) that writes
  what ``pwb personalize`` writes; ``GET /v1/personalize/{job_id}`` and ``.../manifest``;
* ``GET /openapi.json`` (and ``/docs``): the spec; public only with ``public_docs=True``.

Each request is logged as one JSON line (``pwb.api`` logger, :mod:`apps.api.logs`): request id, method,
path, status, milliseconds, key id. Bodies over ``max_body_bytes`` get 413; malformed JSON 400; invalid
fields 422 with the field named; unknown keys 401; over the key's rate 429 with Retry-After
(:mod:`apps.api.errors`, :mod:`apps.api.auth`).
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from apps.api import responses as R
from apps.api.auth import key_dependency
from apps.api.errors import add_error_handlers
from apps.api.keys import KeyRing, RateLimiter
from apps.api.logs import configure_logging
from apps.api.middleware import RequestGuard
from apps.api.routes import health, images, personalize, personas, runs
from apps.api.service import Service, ServiceConfig

DEFAULT_MAX_BODY = 64 * 1024


def _error_responses() -> tuple[dict, dict]:
    """The spec's error answers of every keyed route, and of routes that take a body."""
    errors = {
        401: {"model": R.ErrorOut},
        422: {"model": R.ErrorOut},
        429: {"model": R.ErrorOut},
        503: {
            "model": R.ErrorOut,
            "description": "The workspace is busy (another process writes it) or the "
            "generation queue is full: retry after the Retry-After header's seconds",
        },
    }
    body_errors = {
        **errors,
        400: {"model": R.ErrorOut, "description": "Malformed JSON"},
        413: {"model": R.ErrorOut, "description": "Body over the size limit"},
    }
    return errors, body_errors


def create_app(
    config: ServiceConfig | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    public_docs: bool = False,
    load_in_background: bool = True,
    gate=None,
) -> FastAPI:
    """The API over the workspace ``config.db``; see the module docstring."""
    from workbench.store.gate import WorkspaceGate
    from workbench.store.keys import active_keys

    # 1. The service over the workspace, and the keys it accepts (re-read in the background)
    config = config or ServiceConfig()
    configure_logging()
    gate = gate or WorkspaceGate(config.db, wait_s=config.busy_wait_s)
    service = Service(config, gate)

    def load_keys():
        with gate.reading() as ws:
            return active_keys(ws)

    keys = KeyRing(load_keys, refresh_s=config.key_refresh_s)
    keys.refresh()

    # 2. The app: models load at start-up (in a thread unless told otherwise), the service closes at shutdown
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load_in_background:
            threading.Thread(target=service.load, name="pwb-load", daemon=True).start()
        else:
            service.load()
        yield
        service.close()

    app = FastAPI(
        title="Persona Workbench API",
        version="1",
        description="Cold-start personas, persona rewrites and image generation over a Persona Workbench workspace.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service, app.state.keys, app.state.gate = service, keys, gate
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    add_error_handlers(app, gate.path.parent)

    # 3. The routes, each behind the key check but health and (with public_docs) the spec
    require_key = key_dependency(keys, RateLimiter())
    auth = [Depends(require_key)]
    errors, body_errors = _error_responses()
    health.add_routes(app, service, [] if public_docs else auth)
    personas.add_routes(app, service, auth, errors, body_errors)
    images.add_routes(app, service, require_key, auth, errors, body_errors)
    runs.add_routes(app, service, auth, errors)
    personalize.add_routes(app, service, require_key, auth, errors, body_errors)
    return app
