"""API keys on a running server: tokens (``pwb_<key id>_<secret>``) parsed and checked against the active
keys' digests held in memory (:class:`KeyRing`), and a token bucket per key (:class:`RateLimiter`).

The keys themselves (created, listed, revoked; only the secret's SHA-256 stored) live in
:mod:`workbench.store.keys`. Comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from workbench.store.keys import PREFIX, secret_digest


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    rate_per_minute: int


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` from ``pwb_<id>_<secret>``, or ``None`` for anything else."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


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
        self._keys = {
            k: (digest, ApiKey(key_id=k, name=name, rate_per_minute=int(rate))) for k, name, digest, rate in rows
        }
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
        if hit is None or not hmac.compare_digest(hit[0], secret_digest(secret)):
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
