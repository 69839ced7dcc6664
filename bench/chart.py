"""The chart's cost, and what storing it adds to the hook call, measured in one run.

    .venv/bin/python bench/chart.py            # 200 hook calls each way, 60 chart and plan GETs
    .venv/bin/python bench/chart.py --quick    # fewer, same tables

In process through the whole WSGI stack (Flask test client, SQLite file, audit written), for a patient-view
request with 12 weeks of daily sessions, steps and pain:
1. the hook call with chart storage (links on the cards, the series written with the audit record) and without
   it (links switched off in this process only), interleaved so that both see the same machine load;
2. GET /charts/{token} (drawing the SVG each time, a new token each time), the same pages opened again (drawn
   once: served from memory), and GET /charts/{token}/plan;
3. the page of a series at every bound a chart keeps (the newest 1,000 sessions and pain scores, 24 orders, 16
   red flags): the most one chart can cost to draw, whatever the record.
Prints p50 and p95 of the wall time and the p50 of the CPU time of the thread that served the request (less
sensitive to other load on the machine), in milliseconds, and the targets with what was measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.requests import NOW, observations, patient_view  # noqa: E402

DAYS = 84  # 12 weeks of daily data
PATH = "/cds-services/pacing-review"


Timing = tuple[float, float]  # (wall, thread CPU) seconds


def timed(call: Any) -> tuple[Any, Timing]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = call()
    return result, (time.perf_counter() - wall, time.thread_time() - cpu)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def hook_calls(client: Any, body: bytes, calls: int) -> tuple[list[Timing], list[Timing], list[str]]:
    """Latency of the hook call with and without chart storage, interleaved; the chart URLs it gave."""
    import cds.api.service_call as edge

    with_links = edge.add_chart_links
    timings: dict[bool, list[Timing]] = {True: [], False: []}
    urls: list[str] = []
    for i in range(calls * 2 + 10):
        store = (i % 2 == 0) ^ (i % 4 >= 2)  # ABBA order: neither variant always runs first
        edge.add_chart_links = with_links if store else (lambda *_args, **_kw: [])  # type: ignore[assignment]
        response, elapsed = timed(lambda: client.post(PATH, data=body, content_type="application/json"))
        assert response.status_code == 200, response.get_data(as_text=True)
        cards = response.get_json()["cards"]
        if store:
            urls.extend(link["url"] for card in cards for link in card.get("links", [])[:1])
        if i >= 10:  # warm-up excluded
            timings[store].append(elapsed)
    edge.add_chart_links = with_links
    return timings[True], timings[False], urls


def gets(client: Any, paths: list[str]) -> list[Timing]:
    timings = []
    for path in paths:
        response, elapsed = timed(lambda path=path: client.get(path))
        timings.append(elapsed)
        assert response.status_code == 200, path
    return timings


def at_every_bound() -> Any:
    """A series holding as much as chart_series() ever stores."""
    from datetime import datetime, timedelta

    from cds.charts.model import Series
    from cds.charts.series import MAX_FLAGS, MAX_ORDERS, MAX_READINGS

    now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    step = timedelta(days=84) / MAX_READINGS
    return Series.model_validate({
        "v": 1, "measure": "minutes", "now": now,
        "sessions": [(now - k * step, 10 + k % 50) for k in range(MAX_READINGS)], "steps": [],
        "pain": [(now - k * step, k % 11) for k in range(MAX_READINGS)], "pain_baseline": 3.0,
        "orders": [(now - timedelta(days=3 * k + 1), 20 + k, 3) for k in range(MAX_ORDERS)],
        "plan": {"minutes": 30, "per_week": 3},
        "red_flags": [(now - timedelta(days=k), "fever", 38.5) for k in range(MAX_FLAGS)],
        "params": {}, "code": "hold", "proposed": {"minutes": 30, "per_week": 3}})


def bounded_pages(count: int) -> list[Timing]:
    from datetime import timedelta

    from cds.charts.page import chart_page

    series = at_every_bound()
    expires = series.now + timedelta(days=1)
    return [timed(lambda: chart_page(series, expires, "t" * 32))[1] for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls, same tables")
    args = parser.parse_args()
    calls, pages = (40, 15) if args.quick else (200, 60)

    from cds import create_app
    from cds.settings import load_settings

    before = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    body = patient_view(DAYS)
    raw = orjson.dumps(body)
    with tempfile.TemporaryDirectory(prefix="pacing-cds-bench-") as workdir:
        app = create_app(load_settings(database_url=f"sqlite:///{Path(workdir) / 'bench.db'}", now=NOW,
                                       log_level="WARNING"))
        client = app.test_client()
        with_store, without, urls = hook_calls(client, raw, calls)
        paths = ["/charts/" + url.split("/charts/", 1)[1] for url in urls]
        gets(client, paths[:3])  # warm-up: fonts, templates
        chart = gets(client, paths[3:3 + pages])
        again = gets(client, paths[3:3 + pages])
        plan = gets(client, [p + "/plan" for p in paths[3:3 + pages]])
        bounded = bounded_pages(max(5, pages // 4))
        app.extensions["pacing_cds"].close()

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load} (before the run: {before}); "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"request: {DAYS} days ({observations(body)} observations, {len(raw) / 1024:.0f} KiB)")
    print()
    print(f"{'measure':<40} {'n':>5} {'wall p50':>9} {'wall p95':>9} {'CPU p50':>8}  (ms)")
    rows = [("hook call, chart stored and linked", with_store), ("hook call, no chart (links off)", without),
            ("GET /charts/{token} (SVG drawn)", chart), ("GET /charts/{token} again (drawn once)", again),
            ("GET /charts/{token}/plan", plan), ("chart page at every bound (drawn)", bounded)]
    p50 = {}
    for name, values in rows:
        wall50, wall95 = percentiles([w for w, _ in values])
        cpu50 = percentiles([c for _, c in values])[0]
        p50[name] = (wall50, cpu50)
        print(f"{name:<40} {len(values):>5} {wall50:>9.2f} {wall95:>9.2f} {cpu50:>8.2f}")
    added = [a - b for a, b in zip(p50[rows[0][0]], p50[rows[1][0]])]
    chart_p50 = p50[rows[2][0]]
    print()
    print(f"target: chart GET p50 < 100 ms: wall {chart_p50[0]:.1f} ms, CPU {chart_p50[1]:.1f} ms: "
          f"{'met' if chart_p50[0] < 100 else 'NOT met'}")
    print(f"target: hook call p50 rises by at most 0.5 ms: wall {added[0]:+.2f} ms, CPU {added[1]:+.2f} ms: "
          f"{'met' if added[0] <= 0.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
