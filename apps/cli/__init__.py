"""``pwb``: the Persona Workbench command line, a thin layer over library calls.

One module per command group (``data``, ``prompts``, ``personas``, ``coldstart``, ``rewrite``, ``generate``,
``variations``, ``bench``, ``runs``, ``demo``, ``serve``); :mod:`apps.cli.common` holds the shared options, the workspace opener and the output
helpers. Heavy modules (torch, sentence-transformers, scikit-learn, duckdb) are imported inside the
commands that need them, so ``pwb --help`` starts instantly.
"""

from __future__ import annotations

import click

from apps.cli import common
from apps.cli.bench import bench
from apps.cli.coldstart import personas_coldstart, personas_coldstart_curve
from apps.cli.data import data
from apps.cli.demo import demo
from apps.cli.generate import generate
from apps.cli.personalize import personalize
from apps.cli.personas import personas
from apps.cli.prompts import prompts
from apps.cli.rewrite import rewrite
from apps.cli.runs import labels, runs
from apps.cli.serve import dashboard, keys, serve
from apps.cli.variations import variations
from apps.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="persona-workbench")
@click.option(
    "--wait",
    "wait_s",
    default=300.0,
    show_default=True,
    envvar="PWB_WAIT",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long a command waits for a workspace another process holds [env PWB_WAIT].",
)
def cli(wait_s):
    """Persona Workbench: mine personas from behaviour, rewrite prompts per user, benchmark on held-out users.

    Every command reads and writes one DuckDB workspace (--db or PWB_DB). Start with `pwb demo`.
    """
    common.set_wait(wait_s)


for command in (personas_coldstart, personas_coldstart_curve):
    personas.add_command(command)
for command in (
    data,
    prompts,
    personas,
    rewrite,
    generate,
    personalize,
    variations,
    bench,
    runs,
    demo,
    labels,
    verify,
    keys,
    serve,
    dashboard,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pwb")
