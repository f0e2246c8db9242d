"""The house's shape, checked: one-way layers, SQL only in the store, thin apps, long functions in steps.

DESIGN.md (Layers, Layout) is the contract; import-linter checks the layers too (``make test`` runs
``lint-imports``), this test says which line breaks a rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["workbench", "persona", "prompting", "generation", "evalbench", "apps"]
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|VIEW|INDEX|SEQUENCE)\b|ALTER\s+TABLE\b|DROP\s+(TABLE|VIEW)\b|"
    r"COPY\s*\(|PRAGMA\s+\w+|CHECKPOINT\b)",
    re.S,
)
STEP = re.compile(r"^\s*#\s*\d+[.)]\s")


def _files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (prose may say SELECT)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _strings(tree: ast.Module):
    """Every string literal's text with its line: f-strings joined, docstrings left out."""
    docs = _docstrings(tree)
    inside_f = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else " x " for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs | inside_f:
            yield node.lineno, node.value


def _concatenated(tree: ast.Module):
    """Adjacent literals and ``+`` chains as one text (a query is often split over lines)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [t for _, t in _strings(ast.Module(body=[ast.Expr(node)], type_ignores=[]))]
            if len(parts) > 1:
                yield node.lineno, " ".join(parts)


def test_no_package_imports_one_above_it():
    rank = {p: i for i, p in enumerate(LAYERS)}
    bad = []
    for path in _files(*LAYERS):
        top = path.relative_to(ROOT).parts[0]
        for node in ast.walk(_tree(path)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for name in names:
                target = name.split(".")[0]
                if target in rank and rank[target] > rank[top]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_sql_lives_only_in_the_store():
    bad = []
    for path in _files(*LAYERS):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("workbench", "store"):
            continue
        tree = _tree(path)
        for line, text in [*_strings(tree), *_concatenated(tree)]:
            if SQL.search(text):
                bad.append(f"{rel}:{line} {text[:70]!r}")
    assert not bad, "SQL outside workbench/store/:\n" + "\n".join(sorted(set(bad)))


def test_the_sql_pattern_finds_queries_and_skips_prose():
    assert SQL.search("SELECT user_id FROM personas WHERE split_id = ?")
    assert SQL.search("INSERT OR REPLACE INTO settings VALUES (?, ?)") and SQL.search("DELETE FROM runs")
    assert not SQL.search("select the rewrite that best fits the user's history")
    assert not SQL.search("Select a user from the list")


def test_apps_are_thin_files():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in _files("apps") if (n := len(p.read_text().splitlines())) > 300]
    assert not long, "files under apps/ over 300 lines:\n" + "\n".join(long)


@pytest.mark.parametrize("package", LAYERS)
def test_long_functions_are_written_in_numbered_steps(package):
    bad = []
    for path in _files(package):
        lines = path.read_text().splitlines()
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                steps = {
                    STEP.match(x).group(0).strip() for x in lines[node.lineno - 1 : node.end_lineno] if STEP.match(x)
                }
                if len(steps) < 2:
                    bad.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                        f"({node.end_lineno - node.lineno + 1} lines, {len(steps)} numbered steps)"
                    )
    assert not bad, "functions over 80 lines without numbered steps:\n" + "\n".join(bad)
