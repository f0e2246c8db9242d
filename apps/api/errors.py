"""The API's errors and how each is answered: the status code, ``{"detail", "errors"}``, and a Retry-After
where coming back later helps (503: models loading, a busy workspace, a full queue, an I/O fault)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class NotReady(RuntimeError):
    """The models are still loading (or failed to load)."""


class NotFound(LookupError):
    """No such persona, run, job, image, catalogue item or survey answer."""


class Conflict(ValueError):
    """The request contradicts what it refers to (two answers to a one-answer survey question)."""


class Busy(RuntimeError):
    """The server cannot take this request now (the generation queue is full); ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


def _field(loc) -> str:
    parts = [str(p) for p in loc if p != "body"] or ["body"]
    return ".".join(parts)


def _answer(detail: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": []}, status_code=status, headers=headers)


def _unavailable(request: Request, detail: str, retry_after: float) -> JSONResponse:
    request.scope["state"]["error"] = detail  # the request log line says why
    return _answer(detail, 503, {"Retry-After": str(max(1, round(retry_after)))})


async def _invalid(request: Request, exc: RequestValidationError):
    """Malformed JSON is 400; a field that fails validation is 422 with every field named."""
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        e = next(e for e in errs if e.get("type") == "json_invalid")
        return _answer(f"request body is not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}", 400)
    out = [{"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errs]
    detail = "; ".join(f"{o['field']}: {o['message']}" for o in out[:5])
    return JSONResponse({"detail": detail, "errors": out}, status_code=422)


def add_error_handlers(app: FastAPI, workspace_dir) -> None:
    """Answer the library's and the service's errors; an I/O fault's message names ``workspace_dir``."""
    from workbench.store.workspace import WorkspaceBusy, WorkspaceError, io_message

    app.add_exception_handler(RequestValidationError, _invalid)

    async def value(request: Request, exc: ValueError):
        return _answer(str(exc), 422)

    async def missing(request: Request, exc: NotFound):
        return _answer(str(exc.args[0]), 404)

    async def conflict(request: Request, exc: Conflict):
        return _answer(str(exc.args[0]), 409)

    async def not_ready(request: Request, exc: NotReady):
        return _answer(str(exc), 503, {"Retry-After": "2"})

    async def busy(request: Request, exc: WorkspaceBusy):
        # another process (a bench run, a CLI writer) holds the workspace: come back, nothing is lost
        return _unavailable(request, str(exc), 5)

    async def queue_full(request: Request, exc: Busy):
        return _unavailable(request, str(exc), exc.retry_after)

    async def workspace(request: Request, exc: WorkspaceError):
        return _unavailable(request, str(exc), 30)

    async def io(request: Request, exc: OSError):
        return _unavailable(request, io_message(exc, workspace_dir, "store or read a file"), 30)

    for kind, handler in (
        (ValueError, value),
        (NotFound, missing),
        (Conflict, conflict),
        (NotReady, not_ready),
        (WorkspaceBusy, busy),
        (Busy, queue_full),
        (WorkspaceError, workspace),
        (OSError, io),
    ):
        app.add_exception_handler(kind, handler)
