"""The HTTP API (FastAPI): ``create_app(ServiceConfig(db=...))``, served by ``pwb serve``.

Routes (all but ``/healthz`` and ``/readyz`` need a key: ``Authorization: Bearer pwb_...`` or
``X-API-Key: pwb_...``; keys come from ``pwb keys create``):

* ``POST /v1/personas``: cold start, a persona for a new user from a few interactions and/or intake
  answers, in one pass of the trained graph encoder (no LLM); ``GET /v1/survey`` lists the intake questions;
* ``GET /v1/personas/{user_id}``: a stored persona (cold-start or mined);
* ``POST /v1/rewrite``: a persona (by user id, or inline) and prompts -> rewritten prompts;
* ``POST /v1/generate``: conditions -> an asynchronous job (202 with its status URL);
  ``GET /v1/jobs/{job_id}``; ``GET /v1/images/{sha256}``;
* ``GET /v1/runs``, ``GET /v1/runs/{run_id}/scores``: benchmark runs and their scores;
* ``GET /openapi.json`` (and ``/docs``): the spec; public only with ``public_docs=True``.

Each request is logged as one JSON line (``pwb.api`` logger): request id, method, path, status,
milliseconds, key id. Bodies over ``max_body_bytes`` get 413; malformed JSON 400; invalid fields 422 with
the field named; unknown keys 401; over the key's rate 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from apps.api import schemas as S
from apps.api.keys import KeyRing, RateLimiter
from apps.api.service import Busy, Conflict, NotFound, NotReady, Service, ServiceConfig

log = logging.getLogger("pwb.api")
DEFAULT_MAX_BODY = 64 * 1024
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's ``extra`` fields (15 lines; not worth a dependency)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info", stream=None) -> None:
    """JSON lines on stderr for the ``pwb.api`` logger (idempotent)."""
    if any(getattr(h, "_pwb", False) for h in log.handlers):
        return
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(JsonFormatter())
    h._pwb = True  # type: ignore[attr-defined]
    log.addHandler(h)
    log.setLevel(level.upper())
    log.propagate = False


class RequestGuard:
    """Pure ASGI middleware (no per-request task switch, unlike BaseHTTPMiddleware): a request id, the
    body size limit (Content-Length up front, streamed bodies as they arrive), one JSON log line."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}
        headers = dict(scope.get("headers") or [])
        too_big = None
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                if int(cl) > self.max_body:
                    too_big = int(cl)
            except ValueError:
                return await self._error(send, status, 400, "Content-Length header is not a number", rid, scope, t0)
        if too_big is not None:
            return await self._error(send, status, 413, f"request body is {too_big} bytes; this server accepts at "
                                     f"most {self.max_body} (pwb serve --max-body-bytes)", rid, scope, t0)
        seen = {"n": 0, "answered": False}
        max_body = self.max_body

        async def limited_receive():
            msg = await receive()
            if msg["type"] == "http.request" and not seen["answered"]:
                seen["n"] += len(msg.get("body", b""))
                if seen["n"] > max_body:  # answer now; the app sees a disconnect and its reply is dropped
                    seen["answered"] = True
                    await self._error(send, status, 413, f"request body exceeds {max_body} bytes (got at least "
                                      f"{seen['n']}); pwb serve --max-body-bytes raises the limit", rid, scope, t0)
                    return {"type": "http.disconnect"}
            return msg

        async def send_wrapper(msg):
            if seen["answered"]:
                return
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                msg.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(msg)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except Exception as exc:
            if seen["answered"]:  # the disconnect we simulated, surfacing from the app
                return
            status["code"] = 500  # an error no handler answered: still one log line, with the error
            self._log(scope, 500, rid, t0, error=f"{type(exc).__name__}: {exc}")
            raise
        if not seen["answered"]:
            self._log(scope, status["code"], rid, t0)

    async def _error(self, send, status, code, detail, rid, scope, t0):
        body = json.dumps({"detail": detail, "errors": []}).encode()
        status["code"] = code
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", rid.encode())]})
        await send({"type": "http.response.body", "body": body})
        self._log(scope, code, rid, t0)

    @staticmethod
    def _log(scope, code, rid, t0, error: str | None = None):
        if log.isEnabledFor(logging.INFO) or code >= 500:
            extra = {"event": "request", "request_id": rid, "method": scope.get("method"), "path": scope.get("path"),
                     "status": code, "ms": round((time.perf_counter() - t0) * 1000, 2),
                     "key_id": scope["state"].get("key_id")}
            error = error or scope["state"].get("error")
            if error:
                extra["error"] = error
            (log.error if code >= 500 else log.info)("request", extra=extra)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p != "body"] or ["body"]
    return ".".join(parts)


def create_app(config: ServiceConfig | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY,
               public_docs: bool = False, load_in_background: bool = True, gate=None) -> FastAPI:
    """The API over the workspace ``config.db``; see the module docstring."""
    from evalbench.store.gate import WorkspaceGate
    from evalbench.store.workspace import WorkspaceBusy, WorkspaceError

    config = config or ServiceConfig()
    configure_logging()
    gate = gate or WorkspaceGate(config.db, wait_s=config.busy_wait_s)
    service = Service(config, gate)

    def load_keys():
        with gate.reading() as ws:
            return ws.query("SELECT key_id, name, secret_sha256, rate_per_minute FROM api_keys WHERE revoked_at IS NULL")

    keys = KeyRing(load_keys, refresh_s=config.key_refresh_s)
    keys.refresh()
    limiter = RateLimiter()

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
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.service, app.state.keys, app.state.gate = service, keys, gate
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer pwb_<id>_<secret> (pwb keys create)")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Or X-API-Key: pwb_<id>_<secret>")

    def require_key(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer),
                    api_key: str | None = Depends(header)):
        token = cred.credentials if cred is not None else api_key
        key = keys.verify(token)
        if key is None:
            raise HTTPException(401, "missing or invalid API key: send `Authorization: Bearer pwb_...` or "
                                     "`X-API-Key: pwb_...` (create one with `pwb keys create NAME`)",
                                headers={"WWW-Authenticate": "Bearer"})
        request.scope["state"]["key_id"] = key.key_id
        ok, retry, remaining = limiter.hit(key)
        if not ok:
            raise HTTPException(429, f"rate limit of {key.rate_per_minute} requests a minute for key {key.key_id} "
                                     f"reached; retry in {retry:.1f} s", headers={"Retry-After": str(max(1, round(retry)))})
        return key

    auth = [Depends(require_key)]
    RewriteIn = S.rewrite_in(tuple(config.rewriters))  # the spec lists this server's rewriters and limits
    GenerateIn = S.generate_in(config.max_side, config.max_steps, config.max_work, config.default_steps)
    errors = {401: {"model": S.ErrorOut}, 422: {"model": S.ErrorOut}, 429: {"model": S.ErrorOut},
              503: {"model": S.ErrorOut, "description": "The workspace is busy (another process writes it) or the "
                    "generation queue is full: retry after the Retry-After header's seconds"}}
    body_errors = {**errors, 400: {"model": S.ErrorOut, "description": "Malformed JSON"},
                   413: {"model": S.ErrorOut, "description": "Body over the size limit"}}

    # -- errors ------------------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            e = next(e for e in errs if e.get("type") == "json_invalid")
            return JSONResponse({"detail": f"request body is not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}",
                                 "errors": []}, status_code=400)
        out = [{"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errs]
        detail = "; ".join(f"{o['field']}: {o['message']}" for o in out[:5])
        return JSONResponse({"detail": detail, "errors": out}, status_code=422)

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc), "errors": []}, status_code=422)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc.args[0]), "errors": []}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc.args[0]), "errors": []}, status_code=409)

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, exc: NotReady):
        return JSONResponse({"detail": str(exc), "errors": []}, status_code=503, headers={"Retry-After": "2"})

    def _unavailable(request: Request, detail: str, retry_after: float) -> JSONResponse:
        request.scope["state"]["error"] = detail  # the request log line says why
        return JSONResponse({"detail": detail, "errors": []}, status_code=503,
                            headers={"Retry-After": str(max(1, round(retry_after)))})

    @app.exception_handler(WorkspaceBusy)
    async def _busy(request: Request, exc: WorkspaceBusy):
        # another process (a bench run, a CLI writer) holds the workspace: come back, nothing is lost
        return _unavailable(request, str(exc), 5)

    @app.exception_handler(Busy)
    async def _queue_full(request: Request, exc: Busy):
        return _unavailable(request, str(exc), exc.retry_after)

    @app.exception_handler(WorkspaceError)
    async def _workspace(request: Request, exc: WorkspaceError):
        return _unavailable(request, str(exc), 30)

    @app.exception_handler(OSError)
    async def _io(request: Request, exc: OSError):
        from evalbench.store.workspace import io_message

        return _unavailable(request, io_message(exc, service.gate.path.parent, "store or read a file"), 30)

    # -- health --------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=S.Health, tags=["health"], summary="Liveness (no key needed)")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", response_model=S.Readiness, tags=["health"], summary="Readiness (no key needed)",
             responses={503: {"model": S.Readiness}})
    async def readyz():
        body = {"ready": service.ready, "detail": "ready" if service.ready else (service.error or "loading models"),
                "split": service.split_id, "encoder": config.encoder, "catalogue_items": len(service.items) or None,
                "rewriters": list(config.rewriters), "generate_backend": config.generate_backend}
        return JSONResponse(body, status_code=200 if service.ready else 503)

    # -- spec ----------------------------------------------------------------------------------------
    spec_deps = [] if public_docs else auth

    @app.get("/openapi.json", include_in_schema=False, dependencies=spec_deps)
    async def openapi():
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=spec_deps)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Persona Workbench API")

    # -- personas ------------------------------------------------------------------------------------
    @app.post("/v1/personas", response_model=S.ColdStartOut, status_code=201, dependencies=auth, tags=["personas"],
              summary="Cold start: a persona for a new user",
              responses={**body_errors, 404: {"model": S.ErrorOut, "description": "No item id is in the catalogue, or a "
                                              "survey question or option does not exist (GET /v1/survey)"},
                         409: {"model": S.ErrorOut, "description": "Several answers to a one-answer question"}})
    async def create_persona(body: S.ColdStartIn):
        # async on purpose: ~2 ms of CPU in one pass of the encoder costs less inline than a thread hop
        card, unknown, pending = service.coldstart(body)
        if pending is not None:
            await asyncio.wrap_future(pending)  # on disk before we say so (OSError: 503, nothing acknowledged)
            service.remember(card)
        return {"persona": _persona(card, "coldstart"), "unknown_items": unknown, "stored": pending is not None}

    @app.get("/v1/survey", response_model=S.SurveyOut, dependencies=auth, tags=["personas"],
             summary="The intake survey that POST /v1/personas accepts answers to",
             responses={**errors, 503: {"model": S.ErrorOut}})
    async def survey():
        service._need_ready()
        return {"questions": [{"id": q.qid, "text": q.text, "multiple": q.multiple,
                               "options": [{"label": o.label, "items": o.items, "traits": o.traits} for o in q.options]}
                              for q in service.survey.questions]}

    @app.get("/v1/personas/{user_id}", response_model=S.PersonaOut, dependencies=auth, tags=["personas"],
             summary="A stored persona", responses={**errors, 404: {"model": S.ErrorOut}})
    def get_persona(user_id: str):
        card, source = service.persona(user_id)
        return _persona(card, source)

    # -- rewrites ------------------------------------------------------------------------------------
    def _bodied(model):  # the body's model is built per server: give it to FastAPI as a real class
        def deco(fn):
            fn.__annotations__["body"] = model
            return fn
        return deco

    @app.post("/v1/rewrite", response_model=S.RewritesOut, dependencies=auth, tags=["prompts"],
              summary="Rewrite prompts from a persona's perspective", responses={**body_errors, 404: {"model": S.ErrorOut}})
    @_bodied(RewriteIn)
    def rewrite(body):
        return service.rewrite(body)

    # -- generation ----------------------------------------------------------------------------------
    @app.post("/v1/generate", response_model=S.JobOut, status_code=202, tags=["images"],
              summary="Draw images for conditions (an asynchronous job)", responses=body_errors)
    @_bodied(GenerateIn)
    def generate(body, request: Request, key=Depends(require_key)):
        job = service.jobs.submit(key.key_id, body.model_dump())
        return _job(job)

    @app.get("/v1/jobs/{job_id}", response_model=S.JobOut, dependencies=auth, tags=["images"],
             summary="A generation job's status and images", responses={**errors, 404: {"model": S.ErrorOut}})
    def job(job_id: str):
        return _job(service.jobs.get(job_id))

    @app.get("/v1/images/{sha256}", dependencies=auth, tags=["images"], summary="A generated PNG",
             responses={**errors, 404: {"model": S.ErrorOut}, 200: {"content": {"image/png": {}}}},
             response_class=FileResponse)
    def image(sha256: str = PathParam(pattern="^[0-9a-f]{64}$", description="The image's content hash (a job's images).")):
        return FileResponse(service.image_path(sha256), media_type="image/png")

    # -- runs ----------------------------------------------------------------------------------------
    @app.get("/v1/runs", response_model=S.RunsOut, dependencies=auth, tags=["runs"], summary="Benchmark runs",
             responses=errors)
    def runs():
        return {"runs": service.runs()}

    @app.get("/v1/runs/{run_id}/scores", response_model=S.ScoresOut, dependencies=auth, tags=["runs"],
             summary="A run's scores: per-metric means, leaderboard, per-group rows",
             responses={**errors, 404: {"model": S.ErrorOut}})
    def scores(run_id: str):
        return service.scores(run_id)

    return app


def _persona(card, source: str) -> dict[str, Any]:
    return {"user_id": card.user_id, "summary": card.summary, "traits": card.traits,
            "evidence": [{"item_id": e.item_id, "weight": float(e.weight), "snippet": e.snippet or ""} for e in card.evidence],
            "demographics": card.demographics or {}, "model_version": card.model_version or "", "source": source}


def _job(job: dict[str, Any]) -> dict[str, Any]:
    return {**{k: job.get(k) for k in ("job_id", "status", "created_at", "started_at", "finished_at", "error")},
            "images": job.get("images") or [], "status_url": f"/v1/jobs/{job['job_id']}"}


async def wait_ready(app: FastAPI, timeout: float = 120.0) -> bool:
    """Until the app's models are loaded (tests, scripts)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if app.state.service.ready or app.state.service.error:
            return app.state.service.ready
        await asyncio.sleep(0.05)
    return False
