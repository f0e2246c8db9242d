"""The README's "A CLI session (real output)" runs today, on a synthetic dataset, and prints what it shows.

Every ``$ pwb ...`` line of that block is run in order on a fresh workspace (the MovieLens import swapped for
a synthetic one, user ``100`` for a synthetic user); each command's output is compared with the README's by
its structure, since the numbers belong to MovieLens: the ``key: value`` keys in order, every table header,
the rows' first column where it names systems or datasets, and the few free-text lines with their numbers
and names masked. A renamed key, a new or dropped column or a changed header line fails here until the
README says the same.
"""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ["data", "import", "synthetic", "--users", "150", "--items", "120", "--seed", "2"]
#: commands whose table rows are compared by their first column (names, not numbers)
FIRST_COLUMN = ("bench report", "data list")
#: commands whose other lines are compared with numbers and names masked
MASKED = ("bench power", "personas show")
_KEY = re.compile(r"^([a-z_]+): ")


def readme_session() -> list[tuple[list[str], list[str]]]:
    """``(argv, README output lines)`` for each command of the README's CLI session block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## A CLI session (real output)", 1)[1].split("```console\n", 1)[1].split("\n```", 1)[0]
    out: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:], comments=True)
            assert argv[0] == "pwb", line
            out.append((argv[1:], []))
        else:
            out[-1][1].append(line)
    return out


def mask(line: str) -> str:
    line = re.sub(r"\b[\w-]+/s\d+\b", "SPLIT", line)
    line = re.sub(r"^\S+ \((\w+)-\d+\)$", r"USER (\1-N)", line)
    return re.sub(r"-?\d+(\.\d+)?", "N", line)


def structure(command: str, lines: list[str]) -> dict:
    """What of an output must match the README's: keys, table headers, first columns, masked lines."""
    keys, headers, first, masked = [], [], [], []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if re.fullmatch(r"[- ]+", line or "x"):
            continue
        if re.fullmatch(r"-+( +-+)*", nxt):
            headers.append(re.split(r"\s{2,}", line.strip()))
        elif _KEY.match(line):
            keys.append(_KEY.match(line).group(1))
        elif command in FIRST_COLUMN and line.strip() and headers:
            first.append(re.split(r"\s{2,}", line.strip())[0])
        elif command in MASKED and line.strip() and not headers:
            masked.append(mask(line))
    return {"keys": keys, "headers": headers, "first_column": sorted(first), "masked": masked}


def _argv(argv: list[str], db: Path) -> list[str]:
    if argv[:3] == ["data", "import", "movielens"]:
        argv = SYNTHETIC + argv[3:]
    if argv[:2] == ["personas", "show"]:
        argv = ["personas", "show", "u3", *argv[3:]]
    i = argv.index("--db")
    return [*argv[:i], "--db", str(db), *argv[i + 2 :]]


def _datasets(lines: list[str]) -> list[str]:
    return [line.replace("ml-100k", "DATASET").replace("movielens", "SOURCE") for line in lines]


@pytest.mark.slow
def test_the_readme_cli_session_prints_what_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = readme_session()
    assert len(session) >= 10 and session[0][0][:3] == ["data", "import", "movielens"]
    for argv, shown in session:
        command = " ".join(argv[:2])
        res = CliRunner().invoke(cli, _argv(argv, tmp_path / "work.duckdb"), catch_exceptions=False)
        assert res.exit_code == 0, f"pwb {' '.join(argv)}:\n{res.output}"
        got = res.stdout.replace("synthetic-s2", "ml-100k").replace("synthetic", "movielens").splitlines()
        want, have = structure(command, _datasets(shown)), structure(command, _datasets(got))
        if command == "personas show":  # the persona's own lines (summary, traits) are data, not structure
            want["masked"], have["masked"] = want["masked"][:1], have["masked"][:1]
        assert have == want, f"pwb {' '.join(argv)}: the README shows\n{want}\nbut the code prints\n{have}"
