"""The README's screenshots: `make screenshot` (or python -m tests.support.screenshot CHART.png PLANS.png).

Starts `pacing-cds serve` on a free port as of the examples' day, asks it for the step-back-flare example's
cards, opens the card's chart link in headless Chromium and saves what the browser shows; then the take-home plan
of the progress-walking example for a patient who speaks English and for one who speaks Spanish, side by side."""

from __future__ import annotations

import copy
import io
import os
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from tests.conftest import LiveService
from tests.support.browser import chromium
from tests.support.examples import example
from tests.support.processes import free_port

NOW = "2026-11-20T09:00:00Z"
EXAMPLE = "step-back-flare"
PLAN_EXAMPLE = "progress-walking"


def screenshot(out: Path, plans: Path | None = None) -> str:
    """Save the chart of the example's first card as PNG at `out` (and the plans in English and Spanish side by side
    at `plans`); return the card's summary."""
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
            if plans is not None:
                side_by_side([plan_png(service.url, language) for language in ("en-US", "es-MX")], plans)
        finally:
            service.stop()
    return card["summary"]


def plan_png(url: str, language: str) -> bytes:
    """The take-home plan of PLAN_EXAMPLE for a patient who speaks `language`, as headless Chromium shows it."""
    body, expected = example(PLAN_EXAMPLE)
    body = copy.deepcopy(body)
    body["hookInstance"] = str(uuid.uuid4())
    body["prefetch"]["patient"]["communication"] = [
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": True}]
    response = httpx.post(f"{url}/cds-services/{expected['service']}", json=body, timeout=60)
    response.raise_for_status()
    [plan] = [link["url"] for link in response.json()["cards"][0]["links"] if link["url"].endswith("/plan")]
    with chromium(width=700, height=1400) as driver:
        driver.get(plan)
        return driver.get_screenshot_as_png()


def side_by_side(images: list[bytes], out: Path) -> None:
    import matplotlib.image
    import numpy as np

    arrays = [matplotlib.image.imread(io.BytesIO(png), format="png") for png in images]
    height = max(a.shape[0] for a in arrays)
    padded = [np.pad(a, ((0, height - a.shape[0]), (0, 0), (0, 0)), constant_values=1.0) for a in arrays]
    gap = np.ones((height, 16, arrays[0].shape[2]), dtype=arrays[0].dtype)
    gap[..., :3] = 0.8
    matplotlib.image.imsave(out, np.hstack([padded[0], gap, *padded[1:]]))


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/chart.png")
    plans = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/plans.png")
    print(f"{target}, {plans}: {screenshot(target, plans)}")
