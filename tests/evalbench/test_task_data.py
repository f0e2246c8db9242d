"""Task YAML on your own data: ``dataset: NAME`` (a workspace dataset) and ``dataset: {source: table, ...}``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import cli
from evalbench.task_data import TaskDataError
from evalbench.task_spec import _ensure_dataset, load_task, parse_task
from persona.data.synthetic import generate_community
from workbench.store import Workspace
from workbench.store.datasets import list_datasets, load_interactions, load_items, load_users

MAPPING = {
    "value": "rating",
    "timestamp": "ts",
    "item_title": "title",
    "item_text": "description",
    "item_tags": "tags",
    "user_attributes": ["gender", "age_group"],
    "like_threshold": 4,
    "dislike_threshold": 2,
}
IMPORT = [
    *("--users-file", "users.csv", "--items-file", "items.csv", "--value-col", "rating", "--timestamp-col", "ts"),
    *("--item-title-col", "title", "--item-text-col", "description", "--item-tags-col", "tags"),
    *("--user-attrs", "gender,age_group", "--like-threshold", "4", "--dislike-threshold", "2"),
]
SYSTEMS = "systems:\n  - {name: tfidf+template, encoder: tfidf, backend: template}\n"


def write_community(folder: Path, n_users: int = 120, n_items: int = 100) -> Path:
    """A synthetic community (planted personas) written as three CSV files, as a newcomer's export would be."""
    b = generate_community(n_users, n_items, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "rating", "ts"])
        w.writerows([x.user_id, x.item_id, x.value, x.timestamp] for x in b.interactions)
    with open(folder / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "description", "tags"])
        w.writerows([i.item_id, i.title, i.text, "|".join(i.tags)] for i in b.items)
    with open(folder / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "gender", "age_group"])
        w.writerows([u.user_id, u.attributes["gender"], u.attributes["age_group"]] for u in b.users)
    return folder


def task_yaml(path: Path, name: str, dataset: str) -> Path:
    path.write_text(f"task: {name}\nversion: 1\ndataset: {dataset}\nprompts: parti6\ncontrols: false\n{SYSTEMS}")
    return path


def table_section(**extra) -> str:
    return json.dumps(
        {"source": "table", "path": "interactions.csv", "users": "users.csv", "items": "items.csv", **MAPPING, **extra}
    )


def pwb(*args: str, cwd: Path | None = None):
    import os

    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return CliRunner().invoke(cli, list(args))
    finally:
        os.chdir(old)


def records(db: Path, name: str):
    with Workspace(db, read_only=True) as ws:
        return load_users(ws, name), load_items(ws, name), load_interactions(ws, name)


@pytest.mark.slow
def test_a_task_names_an_imported_table_and_a_table_task_reuses_it(tmp_path):
    """`pwb data import table` then `pwb bench run task.yaml` with `dataset: NAME`: a report with a personal win
    rate; then the same file described in the task (`source: table`) is the stored dataset, and its runs too."""
    data, db = write_community(tmp_path / "data"), tmp_path / "w.duckdb"
    imported = pwb(
        "data", "import", "table", "interactions.csv", "--name", "community", *IMPORT, "--db", str(db), cwd=data
    )
    assert imported.exit_code == 0, imported.output
    by_name = pwb("bench", "run", str(task_yaml(data / "mine.yaml", "mine", "community")), "--json", "--db", str(db))
    assert by_name.exit_code == 0, by_name.output
    rep = json.loads(by_name.stdout)
    system = next(s for s in rep["systems"] if s["name"] == "tfidf+template")
    assert rep["split"] == "community/s0" and 0 <= system["personal_win_rate"] <= 1
    lo, hi = system["personal_ci"]
    assert lo <= system["personal_win_rate"] <= hi and system["personal_win_rate"] > 0.5  # planted personas
    # the same files and mapping as a `source: table` task (paths relative to the task file): no new import
    spec = task_yaml(data / "table.yaml", "table", table_section(name="community"))
    again = pwb("bench", "run", str(spec), "--json", "--db", str(db))
    assert again.exit_code == 0, again.output
    rep2 = json.loads(again.stdout)
    twin = next(s for s in rep2["systems"] if s["name"] == "tfidf+template")
    assert (twin["run_id"], twin["personal_win_rate"]) == (system["run_id"], system["personal_win_rate"])
    with Workspace(db, read_only=True) as ws:
        assert [r["dataset_id"] for r in list_datasets(ws)] == ["community"]


def test_a_table_task_imports_its_file_once_and_refuses_a_changed_one(tmp_path):
    data = write_community(tmp_path / "data", n_users=30, n_items=40)
    spec = load_task(str(task_yaml(data / "t.yaml", "t", table_section())))
    with Workspace(tmp_path / "task.duckdb") as ws:
        assert _ensure_dataset(ws, spec) == "interactions"  # the file's stem
        assert _ensure_dataset(ws, spec) == "interactions"  # the second run uses it
        assert len(list_datasets(ws)) == 1
    imported = pwb(
        "data", "import", "table", "interactions.csv", *IMPORT, "--db", str(tmp_path / "cli.duckdb"), cwd=data
    )
    assert imported.exit_code == 0, imported.output
    assert records(tmp_path / "task.duckdb", "interactions") == records(tmp_path / "cli.duckdb", "interactions")
    # the file changes: the stored dataset is not this file's any more
    with open(data / "interactions.csv", "a") as f:
        f.write("u0,i1,5,1700000000\n")
    with Workspace(tmp_path / "task.duckdb") as ws, pytest.raises(TaskDataError) as e:
        _ensure_dataset(ws, spec)
    assert e.value.field == "dataset.name" and "imported from other content" in str(e.value)
    assert "dataset: interactions" in str(e.value)  # how to use the stored one as it is


def test_table_task_errors_name_the_yaml_field(tmp_path):
    data = write_community(tmp_path / "data", n_users=20, n_items=30)
    base = {"task": "t", "version": 1, "systems": [{"name": "a", "encoder": "tfidf"}]}
    bad = [
        ({"source": "table"}, "dataset.path", "needs the file of interactions"),
        ({"source": "table", "path": "x.csv", "colour": "red"}, "dataset.colour", "unknown key for source table"),
        ({"source": "table", "path": "x.csv", "value": 3}, "dataset.value", "expected a column or file name"),
        ({"source": "table", "path": "x.csv", "like_threshold": "high"}, "dataset.like_threshold", "a number"),
        ({"source": "table", "path": "x.csv", "user_attributes": 7}, "dataset.user_attributes", "a list of columns"),
        ({"source": "table", "path": "x.csv", "user": ""}, "dataset.user", "a column or file name"),
        ({"name": "x", "path": "y"}, "dataset.source", "without a source it names a workspace dataset"),
    ]
    for ds, field, words in bad:
        with pytest.raises(TaskDataError, match=rf"task <dict>: {field}: .*{words}") as e:
            parse_task({**base, "dataset": ds})
        assert e.value.field == field
    # a mapped column the file lacks: the error names the task's key, the file and the column
    spec = load_task(str(task_yaml(data / "t.yaml", "t", table_section(value="score"))))
    with Workspace(tmp_path / "w.duckdb") as ws, pytest.raises(TaskDataError) as e:
        _ensure_dataset(ws, spec)
    assert e.value.field == "dataset.value"
    assert "task t: dataset.value: " in str(
        e.value
    ) and "interactions.csv:1: field 'score': missing column(s) score" in str(e.value)


def test_a_task_naming_an_absent_dataset_lists_the_workspace_ones(tmp_path):
    spec = task_yaml(tmp_path / "t.yaml", "t", "films")
    assert parse_task(
        {"task": "t", "version": 1, "dataset": "films", "systems": [{"name": "a", "encoder": "tfidf"}]}
    ).dataset == {"name": "films"}
    db = tmp_path / "w.duckdb"
    assert pwb("data", "import", "synthetic", "--users", "30", "--items", "20", "--db", str(db)).exit_code == 0
    res = pwb("bench", "run", str(spec), "--db", str(db))
    assert res.exit_code == 1
    assert f"task t: dataset: no dataset 'films' in the workspace {db}; it has: synthetic-s0" in res.output
    assert "pwb data import table FILE --name NAME" in res.output
    with Workspace(db, read_only=True) as ws:
        assert [r["dataset_id"] for r in list_datasets(ws)] == ["synthetic-s0"]  # nothing made
