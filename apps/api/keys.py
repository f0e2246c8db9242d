"""API keys: ``pwb_<key id>_<secret>``, stored as the key id and the SHA-256 of the secret.

The secret is 32 random bytes (``secrets.token_urlsafe``) shown once at creation; only its digest is
kept, so a leaked workspace file leaks no usable key. A plain SHA-256 (not a password hash such as
scrypt) is the right tool for machine-generated 256-bit secrets: there is nothing to brute-force, and
verification must cost microseconds on every request. Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "pwb_"
DEFAULT_RATE = 600  # requests per minute per key


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    rate_per_minute: int


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` from ``pwb_<id>_<secret>``, or ``None`` for anything else."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


def create_key(ws, name: str, *, rate_per_minute: int = DEFAULT_RATE) -> dict[str, Any]:
    """Store a new key; returns its id, name, rate and the token (shown once, never stored)."""
    if not name or not name.strip():
        raise ValueError("name: give the key a name (who or what uses it), e.g. --name checkout-service")
    if not isinstance(rate_per_minute, int) or rate_per_minute < 1:
        raise ValueError(f"rate_per_minute must be a positive whole number, got {rate_per_minute!r}")
    if ws.scalar("SELECT count(*) FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]):
        raise ValueError(f"name: an active key is already called {name!r}; revoke it first or pick another name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with ws.transaction() as con:
        con.execute("INSERT INTO api_keys (key_id, name, secret_sha256, rate_per_minute) VALUES (?, ?, ?, ?)",
                    [key_id, name, _digest(secret), rate_per_minute])
    return {"key_id": key_id, "name": name, "rate_per_minute": rate_per_minute, "token": f"{PREFIX}{key_id}_{secret}"}


def revoke_key(ws, key: str) -> dict[str, Any]:
    """Revoke by key id or name; returns what was revoked."""
    rows = ws.query("SELECT key_id, name FROM api_keys WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL", [key, key])
    if not rows:
        raise ValueError(f"no active API key has id or name {key!r} (see `pwb keys list`)")
    if len(rows) > 1:
        raise ValueError(f"{key!r} matches {len(rows)} keys; revoke by key id")
    with ws.transaction() as con:
        con.execute("UPDATE api_keys SET revoked_at = current_timestamp WHERE key_id = ?", [rows[0][0]])
    return {"key_id": rows[0][0], "name": rows[0][1], "revoked": True}


def list_keys(ws) -> list[dict[str, Any]]:
    cols = ["key_id", "name", "rate_per_minute", "created_at", "revoked_at"]
    return [dict(zip(cols, r)) for r in ws.query(f"SELECT {', '.join(cols)} FROM api_keys ORDER BY created_at, key_id")]


class KeyRing:
    """The active keys' digests in memory. When they are older than ``refresh_s`` seconds a request starts
    a re-read in a background thread (so a ``pwb keys create`` / ``revoke`` takes effect on a running
    server within about that time) and is itself answered from the keys in hand: verification never
    waits on the workspace."""

    def __init__(self, load, refresh_s: float = 5.0):
        self._load = load  # () -> list of (key_id, name, secret_sha256, rate_per_minute)
        self.refresh_s = refresh_s
        self._keys: dict[str, tuple[str, ApiKey]] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()

    def refresh(self) -> None:
        rows = self._load()
        self._keys = {k: (digest, ApiKey(k, name, int(rate))) for k, name, digest, rate in rows}
        self._at = time.monotonic()

    def _refresh_in_background(self) -> None:
        def run():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a busy workspace keeps the last known keys
                self._at = time.monotonic()
            finally:
                self._lock.release()

        threading.Thread(target=run, name="pwb-keys", daemon=True).start()

    def verify(self, token: str | None) -> ApiKey | None:
        if time.monotonic() - self._at > self.refresh_s and self._lock.acquire(blocking=False):
            self._refresh_in_background()
        parsed = parse_token(token) if token else None
        if parsed is None:
            return None
        key_id, secret = parsed
        hit = self._keys.get(key_id)
        if hit is None or not hmac.compare_digest(hit[0], _digest(secret)):
            return None
        return hit[1]


class RateLimiter:
    """Token bucket per key: ``rate_per_minute`` tokens a minute, bursts up to a tenth of a minute's worth
    (at least 5). Returns ``(allowed, retry_after_seconds, remaining)``.

    Our own dozen lines: pyrate-limiter (installed with schemathesis) keeps a sliding-window log per
    bucket, blocks by default, runs a leak thread, and does not return the Retry-After a 429 should carry.
    """

    def __init__(self):
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: ApiKey, now: float | None = None) -> tuple[bool, float, int]:
        now = time.monotonic() if now is None else now
        rate = key.rate_per_minute / 60.0
        cap = max(5.0, key.rate_per_minute / 10.0)
        with self._lock:
            tokens, at = self._buckets.get(key.key_id, (cap, now))
            tokens = min(cap, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key.key_id] = (tokens - 1.0, now)
                return True, 0.0, int(tokens - 1.0)
            self._buckets[key.key_id] = (tokens, now)
            return False, (1.0 - tokens) / rate, 0
