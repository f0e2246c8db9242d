"""``;``- and ``=``-separated tables: refused with the separator to pass, read with ``--delimiter``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from apps.cli import cli
from persona.data.table import ColumnMapping, load_table
from workbench.errors import DataError

ROWS = [("u1", "i1", "5"), ("u1", "i2", "3"), ("u2", "i1", "4")]


def _write(path, sep):
    path.write_text(sep.join(("user_id", "item_id", "rating")) + "\n" + "".join(sep.join(r) + "\n" for r in ROWS))
    return path


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("=", "equals-sign"), ("\t", "tab")])
def test_a_joined_header_names_the_delimiter_to_pass(tmp_path, sep, name):
    path = _write(tmp_path / "logs.csv", sep)
    mapping = ColumnMapping(value="rating")
    with pytest.raises(DataError, match=rf"one column that looks {name}-separated\. Pass --delimiter"):
        load_table(path, mapping)
    bundle = load_table(path, mapping, delimiter="tab" if sep == "\t" else sep)
    assert [(x.user_id, x.item_id, x.value) for x in bundle.interactions] == [(u, i, float(v)) for u, i, v in ROWS]


def test_the_delimiter_must_be_one_character(tmp_path):
    with pytest.raises(DataError, match="field 'delimiter': the delimiter must be one character"):
        load_table(_write(tmp_path / "logs.csv", ";"), delimiter=";;")


def test_cli_with_and_without_delimiter(tmp_path):
    path, db = _write(tmp_path / "logs.csv", ";"), tmp_path / "w.duckdb"
    bad = CliRunner().invoke(cli, ["data", "import", "table", str(path), "--db", str(db)])
    assert bad.exit_code != 0 and "--delimiter ';'" in bad.output
    ok = CliRunner().invoke(cli, ["data", "import", "table", str(path), "--delimiter", ";", "--json", "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["interactions"] == 3
