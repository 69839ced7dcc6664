"""One `pacing-cds serve` and one headless Chromium shared by the chart tests (each takes seconds to start)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LiveService
from tests.support.browser import chromium
from tests.support.processes import free_port

NOW = "2026-11-20T09:00:00Z"


@pytest.fixture(scope="package")
def chart_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service evaluating as of the examples' day, on its own SQLite file."""
    workdir = tmp_path_factory.mktemp("charts")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_WORKERS": "2", "PACING_CDS_NOW": NOW,
                "PACING_CDS_DATABASE_URL": f"sqlite:///{workdir / 'charts.db'}", "PYTHONUNBUFFERED": "1"})
    live = LiveService(workdir, env, port).start()
    yield live
    live.stop()


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(log=tmp_path_factory.mktemp("chromium") / "chromedriver.log") as driver:
        yield driver
