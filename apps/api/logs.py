"""The API's log: one JSON object per line on stderr (``pwb.api`` logger), with each record's ``extra`` fields."""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("pwb.api")
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
