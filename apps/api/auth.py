"""Who may call: a key on every route but health (``Authorization: Bearer pwb_...`` or ``X-API-Key: pwb_...``),
within the key's rate (429 with Retry-After beyond it)."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from apps.api.keys import ApiKey, KeyRing, RateLimiter


def key_dependency(keys: KeyRing, limiter: RateLimiter):
    """A FastAPI dependency that answers 401 without a valid key and 429 over its rate; it returns the
    :class:`ApiKey` and puts its id in the request's log line."""
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer pwb_<id>_<secret> (pwb keys create)")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Or X-API-Key: pwb_<id>_<secret>")

    def require_key(
        request: Request,
        cred: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        api_key: str | None = Depends(header),
    ) -> ApiKey:  # noqa: B008 - FastAPI's dependency idiom
        token = cred.credentials if cred is not None else api_key
        key = keys.verify(token)
        if key is None:
            raise HTTPException(
                401,
                "missing or invalid API key: send `Authorization: Bearer pwb_...` or "
                "`X-API-Key: pwb_...` (create one with `pwb keys create NAME`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.scope["state"]["key_id"] = key.key_id
        ok, retry, remaining = limiter.hit(key)
        if not ok:
            raise HTTPException(
                429,
                f"rate limit of {key.rate_per_minute} requests a minute for key {key.key_id} "
                f"reached; retry in {retry:.1f} s",
                headers={"Retry-After": str(max(1, round(retry)))},
            )
        return key

    return require_key
