"""The workspace: migrations once, transactions all-or-nothing, clear errors."""

import duckdb
import pytest

from workbench.store import Workspace, WorkspaceError
from workbench.store.migrations import MIGRATIONS


def test_migrations_applied_once_and_recorded(tmp_path):
    path = tmp_path / "w.duckdb"
    with Workspace(path) as ws:
        assert ws.applied_migrations() == [v for v, _ in MIGRATIONS]
        names = [r[0] for r in ws.query("SELECT name FROM schema_migrations ORDER BY version")]
        assert names == [fn.__name__ for _, fn in MIGRATIONS]
    with Workspace(path) as ws:  # reopening applies nothing new
        assert ws.migrate() == []
        assert ws.scalar("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)


def test_default_path_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PWB_DB", str(tmp_path / "env.duckdb"))
    with Workspace() as ws:
        assert ws.path == tmp_path / "env.duckdb"
    assert (tmp_path / "env.duckdb").exists()


def test_transaction_rolls_back_everything_on_error():
    with Workspace(":memory:") as ws:
        ws.con.execute("INSERT INTO prompts VALUES ('s', 'p1', 'a cat', '', '')")
        with pytest.raises(duckdb.ConstraintException):
            with ws.transaction() as con:
                con.execute("INSERT INTO prompts VALUES ('s', 'p2', 'a dog', '', '')")
                con.execute("INSERT INTO prompts VALUES ('s', 'p1', 'duplicate key', '', '')")
        assert ws.query("SELECT prompt_id FROM prompts") == [("p1",)]


def test_insert_columns_checks_lengths():
    with Workspace(":memory:") as ws:
        with pytest.raises(ValueError, match="column 'prompt' has 1 values, expected 2"):
            ws.insert_columns("prompts", {"prompt_set": ["s", "s"], "prompt_id": ["a", "b"], "prompt": ["x"]})


def test_read_only_missing_workspace_says_what_to_do(tmp_path):
    with pytest.raises(WorkspaceError, match="No workspace at .*pwb data import"):
        Workspace(tmp_path / "nope.duckdb", read_only=True)


def test_second_writer_gets_a_clear_error(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "w.duckdb"
    Workspace(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(WorkspaceError, match=r"is held by PID \d+"):
            Workspace(path)
    finally:
        holder.kill()
        holder.wait()
