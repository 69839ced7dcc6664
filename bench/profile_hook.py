"""Where a hook call's time goes: cProfile of in-process patient-view calls through the whole WSGI stack.

    .venv/bin/python bench/profile_hook.py                  # 200 calls of 90 days, top 40 by own time
    .venv/bin/python bench/profile_hook.py --days 1095 --sort cumulative --calls 50

The calls go through Flask's test client (request parsing, validation, prefetch checks, records, features, rules,
cards, the audit write to a temporary SQLite file), as of the pinned moment of the benchmarks.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.requests import NOW, patient_view  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key: tottime, cumulative, ncalls")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()

    from cds import create_app
    from cds.settings import load_settings

    body = orjson.dumps(patient_view(args.days))
    with tempfile.TemporaryDirectory(prefix="pacing-cds-profile-") as workdir:
        app = create_app(load_settings(database_url=f"sqlite:///{Path(workdir) / 'profile.db'}", now=NOW,
                                       log_level="WARNING"))
        client = app.test_client()

        def call() -> None:
            response = client.post("/cds-services/pacing-review", data=body, content_type="application/json")
            assert response.status_code == 200, response.get_data(as_text=True)

        for _ in range(20):  # warm-up: imports, compiled statements, first-use caches
            call()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            call()
        profile.disable()
        app.extensions["pacing_cds"].close()
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
