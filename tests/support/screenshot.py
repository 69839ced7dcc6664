"""The README's chart screenshot: `make screenshot` (or python -m tests.support.screenshot OUT.png).

Starts `pacing-cds serve` on a free port as of the examples' day, asks it for the step-back-flare example's
cards, opens the card's chart link in headless Chromium and saves what the browser shows."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import httpx

from tests.conftest import LiveService
from tests.support.browser import chromium
from tests.support.examples import example
from tests.support.processes import free_port

NOW = "2026-11-20T09:00:00Z"
EXAMPLE = "step-back-flare"


def screenshot(out: Path) -> str:
    """Save the chart of the example's first card as PNG at `out`; return the card's summary."""
    body, expected = example(EXAMPLE)
    with tempfile.TemporaryDirectory(prefix="pacing-cds-screenshot-") as workdir:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
        env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_WORKERS": "1", "PACING_CDS_NOW": NOW,
                    "PACING_CDS_DATABASE_URL": f"sqlite:///{Path(workdir) / 'screenshot.db'}"})
        service = LiveService(Path(workdir), env, port).start()
        try:
            response = httpx.post(f"{service.url}/cds-services/{expected['service']}", json=body, timeout=60)
            response.raise_for_status()
            card = response.json()["cards"][0]
            with chromium(width=1000, height=1000) as driver:
                driver.get(card["links"][0]["url"])
                out.write_bytes(driver.get_screenshot_as_png())
        finally:
            service.stop()
    return card["summary"]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/chart.png")
    print(f"{target}: {screenshot(target)}")
