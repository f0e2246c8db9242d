"""The request guard: pure ASGI middleware that gives each request an id, enforces the body size limit and
writes one JSON log line per request (request id, method, path, status, milliseconds, key id)."""

from __future__ import annotations

import json
import logging
import time
import uuid

from apps.api.logs import log


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
            return await self._error(
                send,
                status,
                413,
                f"request body is {too_big} bytes; this server accepts at "
                f"most {self.max_body} (pwb serve --max-body-bytes)",
                rid,
                scope,
                t0,
            )
        seen = {"n": 0, "answered": False}
        max_body = self.max_body

        async def limited_receive():
            msg = await receive()
            if msg["type"] == "http.request" and not seen["answered"]:
                seen["n"] += len(msg.get("body", b""))
                if seen["n"] > max_body:  # answer now; the app sees a disconnect and its reply is dropped
                    seen["answered"] = True
                    await self._error(
                        send,
                        status,
                        413,
                        f"request body exceeds {max_body} bytes (got at least "
                        f"{seen['n']}); pwb serve --max-body-bytes raises the limit",
                        rid,
                        scope,
                        t0,
                    )
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
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._log(scope, code, rid, t0)

    @staticmethod
    def _log(scope, code, rid, t0, error: str | None = None):
        if log.isEnabledFor(logging.INFO) or code >= 500:
            extra = {
                "event": "request",
                "request_id": rid,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": code,
                "ms": round((time.perf_counter() - t0) * 1000, 2),
                "key_id": scope["state"].get("key_id"),
            }
            error = error or scope["state"].get("error")
            if error:
                extra["error"] = error
            (log.error if code >= 500 else log.info)("request", extra=extra)
