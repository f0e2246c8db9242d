"""The API's start-up (:meth:`apps.api.service.Service.load`, in a background thread): the served split's
cold-start source read from the workspace (waiting out another process's hold), the trained encoder loaded,
and the bookkeeping of an earlier process (personas still in the journal, jobs it never finished)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from apps.api.logs import log

if TYPE_CHECKING:
    from apps.api.service import Service


def load_models(service: Service) -> None:
    """Load the split's catalogue and the trained encoder (seconds); sets ``ready`` or ``error``."""
    from evalbench.flows.coldstart import load_coldstart

    t0 = time.perf_counter()
    try:
        source = _read_split(service)
        service.error = None
        service.model = load_coldstart(source, torch_threads=service.config.torch_threads)
        _recover(service)
        # The catalogue and interactions are millions of long-lived objects: a full garbage collection
        # scanning them stalled requests for ~0.3 s once in a while. Freezing them out of the
        # collector's view (they live as long as the server process) removes those pauses; only for
        # a process that is the server (not in an app embedded in tests or notebooks).
        if service.config.freeze_gc:
            import gc

            gc.collect()
            gc.freeze()
        service.ready = True
        log.info(
            "models loaded",
            extra={
                "event": "ready",
                "seconds": round(time.perf_counter() - t0, 2),
                "split": service.split_id,
                "encoder": service.config.encoder,
                "items": len(service.model.items),
            },
        )
    except Exception as exc:  # noqa: BLE001 - readiness reports it
        service.error = f"{type(exc).__name__}: {exc}"
        log.error("model loading failed", extra={"event": "not_ready", "error": service.error})


def _read_split(service: Service):
    """The served split's cold-start source (:func:`~evalbench.flows.coldstart.read_coldstart`), waiting
    out another process's hold (visibly)."""
    from evalbench.flows.coldstart import read_coldstart
    from workbench.store.workspace import WorkspaceBusy

    delay = 0.5
    while True:
        try:
            with service.gate.reading() as ws:
                service.split_id = _served_split(service, ws)
                return read_coldstart(ws, service.split_id, service.config.encoder, service.config.encoder_params)
        except WorkspaceBusy as exc:
            service.error = f"waiting for the workspace: {exc}"
            log.warning("models wait for the workspace", extra={"event": "load_wait", "error": str(exc)})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _served_split(service: Service, ws) -> str:
    """``--split``, else the split this workspace's server served before (a bench run adding splits
    does not change what a restarted server serves), else the only split."""
    from workbench.store.settings import setting
    from workbench.store.splits import list_splits, resolve_split

    if service.config.split is None:
        before = setting(ws, "serve.split")
        if before is not None and before in {s["split_id"] for s in list_splits(ws)}:
            return before
    split_id = resolve_split(ws, service.config.split)
    service.gate.journal.append("upsert", {"table": "settings", "row": {"key": "serve.split", "value": split_id}})
    service.writer.notify()
    return split_id


def _recover(service: Service) -> None:
    """Start-up bookkeeping: personas still in the journal answer from memory; jobs of an earlier
    process that never finished are marked failed (:meth:`apps.api.jobs.Jobs.recover`)."""
    from workbench.store.journal import card_from_dict

    journalled: dict[str, str] = {}  # job id -> its latest status still in the journal
    for e in service.gate.journal.pending():
        d = e.get("data") or {}
        if (
            e.get("kind") == "persona"
            and d.get("split_id") == service.split_id
            and d.get("encoder") == service.coldstart_encoder
        ):
            card = card_from_dict(d["card"])
            service.recent[card.user_id] = card
        elif e.get("kind") == "upsert" and d.get("table") == "api_jobs":
            journalled[d["row"]["job_id"]] = d["row"]["status"]
    try:
        marked = service.jobs.recover(journalled)
    except Exception as exc:  # noqa: BLE001 - GET /v1/jobs reports such jobs as failed anyway
        log.warning("abandoned jobs not checked", extra={"event": "store_wait", "error": str(exc)})
        return
    if marked:
        log.info("abandoned jobs marked failed", extra={"event": "jobs_abandoned", "jobs": marked})
        service.writer.notify()
