"""API keys in the workspace: the ``api_keys`` table, one row per key (``pwb_<key id>_<secret>``) holding the
key id, a name, the SHA-256 of the secret, a rate limit and the revocation time.

The secret is 32 random bytes (``secrets.token_urlsafe``) shown once at creation; only its digest is
kept, so a leaked workspace file leaks no usable key. A plain SHA-256 (not a password hash such as
scrypt) is the right tool for machine-generated 256-bit secrets: there is nothing to brute-force, and
verification must cost microseconds on every request (``apps.api.keys`` compares digests in constant time).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from workbench.store.workspace import Workspace

PREFIX = "pwb_"
DEFAULT_RATE = 600  # requests per minute per key


def secret_digest(secret: str) -> str:
    """The stored form of a key's secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(ws: Workspace, name: str, *, rate_per_minute: int = DEFAULT_RATE) -> dict[str, Any]:
    """Store a new key; returns its ``key_id``, ``name``, ``rate_per_minute`` and the ``token`` (shown once,
    never stored). ``ValueError`` names the field: an empty name, a rate below 1, a name an active key has."""
    if not name or not name.strip():
        raise ValueError("name: give the key a name (who or what uses it), e.g. --name checkout-service")
    if not isinstance(rate_per_minute, int) or rate_per_minute < 1:
        raise ValueError(f"rate_per_minute must be a positive whole number, got {rate_per_minute!r}")
    if ws.scalar("SELECT count(*) FROM api_keys WHERE name = ? AND revoked_at IS NULL", [name]):
        raise ValueError(f"name: an active key is already called {name!r}; revoke it first or pick another name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with ws.transaction() as con:
        con.execute(
            "INSERT INTO api_keys (key_id, name, secret_sha256, rate_per_minute) VALUES (?, ?, ?, ?)",
            [key_id, name, secret_digest(secret), rate_per_minute],
        )
    return {"key_id": key_id, "name": name, "rate_per_minute": rate_per_minute, "token": f"{PREFIX}{key_id}_{secret}"}


def revoke_key(ws: Workspace, key: str) -> dict[str, Any]:
    """Revoke the active key whose id or name is ``key``; returns its ``key_id``, ``name`` and ``revoked``.
    ``ValueError`` when no active key matches, or several do (then revoke by id)."""
    rows = ws.query(
        "SELECT key_id, name FROM api_keys WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL", [key, key]
    )
    if not rows:
        raise ValueError(f"no active API key has id or name {key!r} (see `pwb keys list`)")
    if len(rows) > 1:
        raise ValueError(f"{key!r} matches {len(rows)} keys; revoke by key id")
    with ws.transaction() as con:
        con.execute("UPDATE api_keys SET revoked_at = current_timestamp WHERE key_id = ?", [rows[0][0]])
    return {"key_id": rows[0][0], "name": rows[0][1], "revoked": True}


def list_keys(ws: Workspace) -> list[dict[str, Any]]:
    """Every key as ``{key_id, name, rate_per_minute, created_at, revoked_at}`` (never a secret or its digest),
    oldest first."""
    return ws.query_dicts(
        "SELECT key_id, name, rate_per_minute, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id"
    )


def active_keys(ws: Workspace) -> list[tuple[str, str, str, int]]:
    """``(key_id, name, secret_sha256, rate_per_minute)`` of every key not revoked: what a server verifies
    tokens against."""
    return ws.query("SELECT key_id, name, secret_sha256, rate_per_minute FROM api_keys WHERE revoked_at IS NULL")
