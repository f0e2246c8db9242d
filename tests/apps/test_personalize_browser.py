"""The contact sheet ``pwb personalize`` writes, opened in headless Chromium: every image loads, every target
has its section. ``PWB_SHEET=<run>/index.html`` checks that sheet instead of a fresh one, and
``PWB_SCREENSHOT=docs/personalize_contact_sheet.png`` saves what the browser shows (the README's figure)."""

import os
from pathlib import Path

import pytest
from browser import browser_missing, chrome
from click.testing import CliRunner

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


def _fresh_sheet(review_copy, tmp_path) -> Path:
    pytest.importorskip("skimage")
    from apps.cli import cli

    prompts = tmp_path / "p.tsv"
    prompts.write_text("prompt_id\tprompt\np1\ta red bicycle\np2\ta lighthouse at dusk\n")
    out = tmp_path / "out"
    args = ["personalize", "--db", str(review_copy), "--cohort", "women", "--where", "gender = 'female'"]
    args += ["--users", "u0", "--prompts", str(prompts), "--size", "48", "--images", "2", "--baseline"]
    res = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out / "index.html"


def test_the_contact_sheet_loads_every_image_in_chromium(review_copy, tmp_path):
    sheet = Path(os.environ["PWB_SHEET"]) if os.environ.get("PWB_SHEET") else _fresh_sheet(review_copy, tmp_path)
    driver = chrome(1400, 1100, "--allow-file-access-from-files")
    try:
        driver.get(sheet.resolve().as_uri())
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        )
        sections = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.id)")
        if os.environ.get("PWB_SCREENSHOT"):
            driver.save_screenshot(os.environ["PWB_SCREENSHOT"])
    finally:
        driver.quit()
    assert loaded and all(ok for _, ok in loaded), [src for src, ok in loaded if not ok]
    rows = (sheet.parent / "manifest.csv").read_text().splitlines()[1:]
    assert len(loaded) == len(rows)  # one figure per manifest row: persona images and baselines
    targets = {r.split(",", 1)[0] for r in rows}
    assert set(sections) == targets
