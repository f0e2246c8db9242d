"""The dashboard in a real browser: ``pwb dashboard`` as a subprocess, headless Chromium through Selenium.

Opens the Generations page, clicks "Prefer A", waits for the confirmation, checks the label row in the
workspace and saves a screenshot (to ``$PWB_SCREENSHOT`` when set, e.g. ``docs/dashboard.png``, else to
the test's tmp folder; ``$PWB_SCREENSHOT_DB`` labels a copy of that workspace instead of the fixture's). Skips, saying why, where Chromium, chromedriver or Selenium are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import browser_missing, chrome

from workbench.store.workspace import Workspace, WorkspaceError

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 60


def _skip_reason() -> str | None:
    if browser_missing():
        return browser_missing()
    try:
        import streamlit  # noqa: F401
    except ImportError:
        return "streamlit is not installed (pip install persona-workbench[dashboard])"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll Streamlit's health endpoint until it answers (bounded; fails with the server's log)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pwb dashboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"pwb dashboard did not answer {url} within {STARTUP_S} s:\n{log.read_text()}")


def labels_of(db: Path, annotator: str, within_s: float = 10.0) -> list[tuple]:
    """Label rows by ``annotator``, retrying while the dashboard process still holds the file."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with Workspace(db, read_only=True) as ws:
                rows = ws.query("SELECT choice, annotator, system_side FROM labels WHERE annotator = ?", [annotator])
            if rows or time.monotonic() >= deadline:
                return rows
        except WorkspaceError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.3)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen, within_s: float = 15.0) -> None:
    """Terminate the ``pwb dashboard`` process group (pwb and its streamlit child); kill what lingers."""
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + within_s
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        proc.poll()  # reap pwb itself so the group can empty
        time.sleep(0.2)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def screenshot_path(tmp_path: Path) -> Path:
    target = os.environ.get("PWB_SCREENSHOT")
    if not target:
        return tmp_path / "dashboard.png"
    p = Path(target)
    return p if p.is_absolute() else ROOT / p


def test_label_in_browser(review_db, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # PWB_SCREENSHOT_DB: another workspace to label in (e.g. the demo's, for the README's screenshot)
    src = Path(os.environ["PWB_SCREENSHOT_DB"]) if os.environ.get("PWB_SCREENSHOT_DB") else review_db
    shutil.copytree(src.parent, tmp_path / "ws", ignore=shutil.ignore_patterns("*.wal"))
    db = tmp_path / "ws" / src.name
    port = free_port()
    log = tmp_path / "dashboard.log"
    # the app sets client.toolbarMode=viewer itself, but only from a session's second run on; the environment
    # sets it for the first page load too (no "Deploy" button in the screenshot)
    env = {**os.environ, "STREAMLIT_CLIENT_TOOLBAR_MODE": "viewer"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apps.cli",
                "dashboard",
                "--db",
                str(db),
                "--port",
                str(port),
                "--annotator",
                "browser-test",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # its own group: pwb runs streamlit as a child
    driver = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        driver = chrome()
        driver.get(f"http://127.0.0.1:{port}/generations")
        wait = WebDriverWait(driver, 60)
        prefer_a = wait.until(ec.element_to_be_clickable((By.XPATH, "//button[contains(., 'Prefer A')]")))
        wait.until(
            lambda d: (
                sum(
                    bool(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", im))
                    for im in d.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
                )
                >= 4
            )
        )
        assert "persona image was" not in driver.find_element(By.TAG_NAME, "body").text  # blind until labelled
        prefer_a.click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "Label saved"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "The persona image was" in body and "1 label so far" in body
        rows = labels_of(db, "browser-test")
        assert len(rows) == 1 and rows[0][0] == "a", rows
        time.sleep(1.0)  # let the confirmation's entrance animation finish before the screenshot
        shot = screenshot_path(tmp_path)
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000, f"screenshot {shot} is only {shot.stat().st_size} bytes"
    finally:
        if driver is not None:
            driver.quit()
        stop_group(proc)
