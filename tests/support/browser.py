"""Headless Chromium driven through chromedriver (Debian `chromium` + `chromium-driver`) by selenium.

Missing on a developer's machine, the tests that need it skip with the reason; under CI (CI=true) they fail,
since .ci/run installs both packages."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.backing import require

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")
PAGE_LOAD_TIMEOUT_S = 60


@contextmanager
def chromium(width: int = 1100, height: int = 1400, log: Path | None = None) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with its own empty profile, quit at the end whatever happens."""
    binary = require("chromium", "apt-get install chromium")
    driver_path = require("chromedriver", "apt-get install chromium-driver")
    with tempfile.TemporaryDirectory(prefix="pacing-cds-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary  # with the driver path too: selenium downloads nothing
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        service = Service(executable_path=driver_path, log_output=str(log) if log else None)
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
            yield driver
        finally:
            driver.quit()
