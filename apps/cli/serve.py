"""Serving: ``pwb keys`` (API keys), ``pwb serve`` (the HTTP API) and ``pwb dashboard`` (Streamlit)."""

from __future__ import annotations

import click

from apps.cli.common import (
    db_option,
    emit,
    existing_workspace,
    friendly_errors,
    json_option,
    need,
    param_option,
    parse_params,
    split_option,
    table,
    workspace,
)


@click.group()
def keys():
    """API keys for `pwb serve` (stored hashed in the workspace)."""


@keys.command("create")
@click.argument("name")
@click.option("--rate", default=600, show_default=True, type=click.IntRange(min=1), help="Requests a minute allowed.")
@db_option
@json_option
@friendly_errors
def keys_create(name, rate, db, as_json):
    """Create a key NAME; its token is printed once (only a hash is stored)."""
    from workbench.store.keys import create_key

    with workspace(db) as ws:
        out = create_key(ws, name, rate_per_minute=rate)
    if as_json:
        return emit(out, True)
    click.echo(out["token"])
    click.echo(
        f"key {out['key_id']} ({name}, {rate}/min). The token above is shown once: store it now. "
        "Send it as `Authorization: Bearer <token>`.",
        err=True,
    )


@keys.command("list")
@db_option
@json_option
@friendly_errors
def keys_list(db, as_json):
    """Keys with their names, rates and revocation dates (never the secrets)."""
    from workbench.store.keys import list_keys

    with workspace(db, read_only=True) as ws:
        rows = list_keys(ws)
    if as_json:
        return emit(rows, True)
    click.echo(
        table(
            rows,
            [
                ("key_id", "key id"),
                ("name", "name"),
                ("rate_per_minute", "per min"),
                ("created_at", "created"),
                ("revoked_at", "revoked"),
            ],
        )
        if rows
        else "no API keys yet"
    )


@keys.command("revoke")
@click.argument("key")
@db_option
@json_option
@friendly_errors
def keys_revoke(key, db, as_json):
    """Revoke a key by id or name (a running server notices within 5 s)."""
    from workbench.store.keys import revoke_key

    with workspace(db) as ws:
        out = revoke_key(ws, key)
    emit(out, as_json, f"revoked {out['key_id']} ({out['name']})")


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface)."
)
@click.option("--port", default=8000, show_default=True, type=int)
@split_option
@click.option(
    "--encoder", default="gat", show_default=True, help="Trained graph encoder for cold start (gat, gat-noalign, sage)."
)
@param_option
@click.option(
    "--rewriter",
    "rewriters",
    multiple=True,
    help="Rewriter backends to enable beside the template (embedded, transformers, vllm, openai), repeatable.",
)
@click.option(
    "--rewriter-model",
    "rewriter_models",
    multiple=True,
    metavar="BACKEND=MODEL",
    help="Model of an enabled rewriter, repeatable.",
)
@click.option(
    "--generate-backend",
    default="patch",
    show_default=True,
    type=click.Choice(["patch", "diffusers"]),
    help="What POST /v1/generate draws with.",
)
@click.option(
    "--generate-model",
    default=None,
    help="Diffusers id or folder for --generate-backend diffusers "
    "(e.g. stabilityai/stable-diffusion-xl-base-1.0); patch:fast|patch:reference|patch:auto for patch.",
)
@click.option(
    "--pool", default="samples", show_default=True, help="Patch backend: image folder references are retrieved from."
)
@click.option(
    "--max-side",
    default=1024,
    show_default=True,
    type=click.IntRange(min=16),
    help="Largest image side a job may ask for.",
)
@click.option(
    "--max-steps",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most sampling steps a job may ask for.",
)
@click.option(
    "--max-work",
    default=200.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="A job's budget in megapixel-steps (conditions x height x width x steps / 1e6).",
)
@click.option(
    "--max-queue",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs waiting before new ones get 503 with Retry-After.",
)
@click.option("--max-body-bytes", default=65536, show_default=True, type=click.IntRange(min=1024))
@click.option("--public-docs", is_flag=True, help="Serve /docs and /openapi.json without a key.")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@db_option
@friendly_errors
def serve(
    host,
    port,
    split,
    encoder,
    params,
    rewriters,
    rewriter_models,
    generate_backend,
    generate_model,
    pool,
    max_side,
    max_steps,
    max_work,
    max_queue,
    max_body_bytes,
    public_docs,
    log_level,
    db,
):
    """The cold-start personalisation HTTP API (FastAPI on uvicorn); keys from `pwb keys create`."""
    need("fastapi", "api")
    need("uvicorn", "api")
    import uvicorn

    from apps.api.app import create_app
    from apps.api.logs import configure_logging
    from apps.api.service import ServiceConfig

    path = existing_workspace(db)
    if generate_backend == "diffusers" and not generate_model:
        raise click.UsageError("--generate-model is required with --generate-backend diffusers")
    cfg = ServiceConfig(
        db=str(path),
        split=split,
        encoder=encoder,
        encoder_params=parse_params(params),
        rewriters=tuple(dict.fromkeys(("template", *rewriters))),
        rewriter_models=parse_params(rewriter_models, "--rewriter-model"),
        generate_backend=generate_backend,
        generate_model=generate_model,
        pool=pool,
        max_side=max_side,
        max_steps=max_steps,
        max_work=max_work,
        max_queue=max_queue,
        default_steps=30 if generate_backend == "diffusers" else 10,
        freeze_gc=True,
    )
    configure_logging(log_level)
    app = create_app(cfg, max_body_bytes=max_body_bytes, public_docs=public_docs)
    click.echo(
        f"Persona Workbench API on http://{host}:{port} for {path} (models load in the background: "
        f"GET /readyz; Ctrl+C stops it)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=log_level)


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface)."
)
@click.option("--port", default=8501, show_default=True, type=int)
@click.option("--annotator", default=None, help="Name stored with each human label [default: $USER].")
@db_option
@friendly_errors
def dashboard(host, port, annotator, db):
    """Review runs, cohorts, personas and generations in the browser, and collect human labels."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    need("streamlit", "dashboard")
    path = existing_workspace(db)
    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    env = {
        **os.environ,
        "PWB_DB": str(path.resolve()),
        "PWB_ANNOTATOR": annotator or os.environ.get("USER", "") or "anonymous",
    }
    click.echo(f"Dashboard on http://{host}:{port} for {path} (Ctrl+C stops it)", err=True)
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    try:
        raise SystemExit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise SystemExit(0) from None
