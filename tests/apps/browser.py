"""Headless Chromium for the real-browser tests (Debian's chromium and chromium-driver, driven by Selenium)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """Why no headless browser can run here (a skip reason), or ``None``."""
    if not Path(CHROMIUM).is_file():
        return "no chromium binary (Debian: apt-get install chromium)"
    if not Path(CHROMEDRIVER).is_file():
        return "no chromedriver binary (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def chrome(width: int = 1400, height: int = 1000, *extra: str):
    """A headless Chromium driver with a fixed window and scale (screenshots of the same size every time)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        *extra,
    ):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
