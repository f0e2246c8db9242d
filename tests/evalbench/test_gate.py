"""WorkspaceGate: many readers or one writer per process, and patience with other processes' locks."""

import subprocess
import sys
import threading
import time

import pytest

from workbench.store.gate import WorkspaceBusy, WorkspaceGate
from workbench.store.workspace import Workspace, WorkspaceError


def test_readers_share_writer_waits_and_writes_are_seen(tmp_path):
    gate = WorkspaceGate(tmp_path / "w.duckdb")
    with gate.writing() as ws:
        ws.con.execute("CREATE TABLE t (x INTEGER)")
    events = []
    inside = threading.Barrier(3)

    def reader(k):
        with gate.reading() as ws:
            assert ws.read_only
            inside.wait(timeout=5)  # three readers hold the file at once
            time.sleep(0.2)
            events.append(("read", k))

    def writer():
        time.sleep(0.05)
        with gate.writing() as ws:
            ws.con.execute("INSERT INTO t VALUES (1)")
            events.append(("write", 0))

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [e[0] for e in events] == ["read"] * 3 + ["write"]  # the writer waited for the readers
    with gate.reading() as ws:
        assert ws.scalar("SELECT count(*) FROM t") == 1


def test_another_process_holding_the_file_is_waited_for_then_reported(tmp_path):
    db = tmp_path / "w.duckdb"
    Workspace(db).close()
    hold = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    p = subprocess.Popen([sys.executable, "-c", hold, str(db), "1.0"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    gate = WorkspaceGate(db, wait_s=10, migrate=False)
    t = time.perf_counter()
    with gate.reading() as ws:  # retried until the other process let go
        assert ws.applied_migrations()
    assert time.perf_counter() - t > 0.3
    p.wait(5)
    p = subprocess.Popen([sys.executable, "-c", hold, str(db), "3.0"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    try:
        with pytest.raises(WorkspaceBusy, match=r"held by PID \d+ .* for more than 0.3 s"):
            with WorkspaceGate(db, wait_s=0.3, migrate=False).writing():
                pass
    finally:
        p.kill()


def test_missing_workspace_is_named_not_created(tmp_path):
    gate = WorkspaceGate(tmp_path / "none.duckdb", migrate=False)
    with pytest.raises(WorkspaceError, match="No workspace at"):
        with gate.reading():
            pass
    assert not (tmp_path / "none.duckdb").exists()
