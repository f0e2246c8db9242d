"""What every ``pwb`` command shares: option sets, opening the workspace, error wording, output.

Only click is imported at module level; everything heavy (duckdb, yaml, the library) is imported inside
the functions, so ``pwb --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import math

import click

#: how long a command waits for a workspace another process holds (set by ``pwb --wait``)
WAIT_S = 300.0


def set_wait(seconds: float) -> None:
    """Remember ``pwb --wait SECONDS`` for the commands that open the workspace."""
    global WAIT_S
    WAIT_S = seconds


# -- option sets ---------------------------------------------------------------------------------------------
def db_option(fn):
    return click.option(
        "--db",
        envvar="PWB_DB",
        default=None,
        metavar="PATH",
        help="Workspace DuckDB file [env PWB_DB; default ./.pwb/workbench.duckdb].",
    )(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def split_option(fn):
    return click.option("--split", default=None, help="Split id [default: the only split in the workspace].")(fn)


def encoder_option(fn):
    return click.option("--encoder", default="tfidf", show_default=True, help="Persona encoder.")(fn)


def param_option(fn):
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="KEY=VALUE",
        help="Encoder setting, repeatable (e.g. -p epochs=20 -p hidden=64).",
    )(fn)


def graph_encoder_option(fn):
    return click.option("--encoder", default="gat", show_default=True, help="Graph encoder (gat, gat-noalign, sage).")(
        fn
    )


def parse_params(pairs: tuple[str, ...], field: str = "--param") -> dict:
    """``("epochs=20", "align=false")`` -> ``{"epochs": 20, "align": False}`` (values read as YAML scalars)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=field)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def parse_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: a comma-separated option, blanks dropped."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def parse_roles(text: str) -> tuple[str, ...]:
    """``--roles heldout,train`` -> ``("heldout", "train")`` (every entry kept, as the library checks them)."""
    return tuple(r.strip() for r in text.split(","))


# -- errors --------------------------------------------------------------------------------------------------
def friendly_errors(fn):
    """Turn the library's input, workspace and I/O errors into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from workbench.errors import DataError, WorkbenchError
        from workbench.store.workspace import WorkspaceError, io_message

        try:
            return fn(*args, **kwargs)
        except (DataError, WorkspaceError, WorkbenchError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        except FileNotFoundError as exc:
            raise click.ClickException(
                str(exc) if not exc.filename else io_message(exc, exc.filename, "find a file it needs")
            ) from exc
        except OSError as exc:  # a read-only folder, a full disk, a quota: the file and the fix in one line
            raise click.ClickException(io_message(exc, exc.filename or ".", "write a file")) from exc
        except KeyError as exc:  # registry lookups: "unknown ...; did you mean ...?"
            raise click.ClickException(exc.args[0] if exc.args else str(exc)) from exc
        except Exception as exc:
            _reword_duckdb(exc, kwargs.get("db"))
            raise

    return wrapper


def _reword_duckdb(exc: Exception, db: str | None) -> None:
    """A DuckDB error met mid-command (a damaged file, a full disk under DuckDB) as one line."""
    import duckdb

    from workbench.store.workspace import resolve_db_path

    if isinstance(exc, duckdb.Error):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise click.ClickException(
            f"The workspace {resolve_db_path(db)} failed: {first}. If the disk is "
            "full, free space and run the command again (a failed command "
            "changes nothing)."
        ) from exc


def need(module: str, extra: str) -> None:
    """Stop with the ``pip install`` line when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise click.ClickException(f"{module} is not installed: pip install 'persona-workbench[{extra}]'")


def existing_workspace(db: str | None):
    """The workspace path, which must exist (``pwb serve`` and ``pwb dashboard`` never create one)."""
    from workbench.store.workspace import resolve_db_path

    path = resolve_db_path(db)
    if not path.exists():
        raise click.ClickException(f"No workspace at {path}: run `pwb demo` or point --db / PWB_DB at one.")
    return path


# -- the workspace -------------------------------------------------------------------------------------------
def _say_waiting(message: str) -> None:
    click.echo(message, err=True)


def workspace(db: str | None, read_only: bool = False):
    """The workspace, waiting (visibly, up to ``pwb --wait`` seconds) while another process holds it.

    Also what a write that may meet a running ``pwb serve`` / ``pwb dashboard`` uses: they hold the file for
    milliseconds at a time, so the same visible, bounded wait covers them."""
    from workbench.store import Workspace

    return Workspace(db, read_only=read_only, wait_s=WAIT_S, on_wait=_say_waiting)


# -- output --------------------------------------------------------------------------------------------------
def emit(data, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text if text is not None else "\n".join(f"{k}: {v}" for k, v in data.items()))


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain-text table; ``columns`` is ``[(key, header)]``."""
    cells = [[h for _, h in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(v) -> str:
    """A table cell: floats with three decimals (``nan`` kept), ``None`` as empty."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return "" if v is None else str(v)


def interval(low, high) -> str:
    """``[0.123, 0.456]``: a confidence interval's cell."""
    return f"[{fmt(low)}, {fmt(high)}]"
