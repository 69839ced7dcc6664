"""Growth of request validation with the number of items: time per item must stay flat as N doubles.

    .venv/bin/python bench/validation.py

Rows: the order-select selections check (set built once; the former check rebuilt it per selection, shown for
comparison up to 2,000), a whole order-select context validated with N draft orders (the model only: a call
refuses more than MAX_DRAFT_ORDERS), and whole patient-view calls in-process with N Observations.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds import create_app  # noqa: E402
from cds.hooks.models import Bundle, missing_selections  # noqa: E402
from cds.settings import load_settings  # noqa: E402
from tests.support import data  # noqa: E402

SIZES = (5000, 10000, 20000, 40000)


def timed(work: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - started


def drafts(n: int) -> dict[str, Any]:
    draft = data.exercise_order("b1", "d", status="draft")
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {**draft, "id": f"d{i}"}} for i in range(n)]}


def old_check(selections: list[str], bundle: Bundle) -> list[str]:
    return [s for s in selections if s not in bundle.references()]


def row(name: str, n: int, seconds: float) -> None:
    print(f"{name:<44} {n:>7,} {seconds * 1000:>10.1f} ms {seconds / n * 1e6:>8.2f} us/item")


def main() -> None:
    print(f"{'case':<44} {'N':>7} {'time':>13} {'per item':>16}")
    for n in SIZES:
        bundle = Bundle.model_validate(drafts(n))
        selections = [f"ServiceRequest/d{i}" for i in range(n)]
        row("selections check (linear)", n, timed(missing_selections, selections, bundle.references()))
    for n in (500, 1000, 2000):
        bundle = Bundle.model_validate(drafts(n))
        selections = [f"ServiceRequest/d{i}" for i in range(n)]
        row("selections check (former, quadratic)", n, timed(old_check, selections, bundle))
    for n in SIZES:
        raw = drafts(n)
        row("draftOrders Bundle validated", n, timed(Bundle.model_validate, raw))
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(load_settings(database_url=f"sqlite:///{folder}/b.db", max_body_bytes=100 * 1024 * 1024,
                                       log_level="ERROR"))
        client = app.test_client()
        for n in SIZES:
            body = data.patient_view("b1", data.full_prefetch("b1"))
            body["prefetch"]["activity"] = data.searchset(data.daily_steps("b1", n))
            row("patient-view call with N Observations", n,
                timed(client.post, "/cds-services/pacing-review", json=body))
        app.extensions["pacing_cds"].close()


if __name__ == "__main__":
    main()
