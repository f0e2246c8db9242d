"""Progress bars: live on a terminal, one plain line per interval in a log."""

from __future__ import annotations

import io

from workbench.progress import progress_bar


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_whole_lines_not_carriage_returns(monkeypatch):
    monkeypatch.setenv("PWB_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="mining", unit="user", file=log):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = [line for line in text.splitlines() if line]
    assert lines[-1].startswith("mining: 100%") and "5/5" in lines[-1] and len(lines) >= 2


def test_a_terminal_gets_the_live_bar_and_disable_prints_nothing():
    tty = Tty()
    for _ in progress_bar(range(3), desc="x", file=tty):
        pass
    assert "\r" in tty.getvalue()
    quiet = io.StringIO()
    for _ in progress_bar(range(3), desc="x", file=quiet, disable=True):
        pass
    assert quiet.getvalue() == ""
