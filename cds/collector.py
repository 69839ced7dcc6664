"""The garbage collector of a long-lived process (a gunicorn worker, a Dask worker), settled once the process
has built what it keeps."""

from __future__ import annotations

import gc

# Container objects allocated (net of those freed) before a young collection. A served 90-day call holds about
# 1,100 at its peak and a 3-year call about 7,900, all freed by reference counting when the call ends: at CPython's
# default of 700 the collector walked them in nearly every call (0.9 collections a served 90-day call, 0.09 ms;
# 9 an in-process 3-year call, 1.4 ms) and freed nothing. Above a call's peak, a young collection comes only once
# the cyclic garbage of some hundreds of calls has built up (about 2 ms each, every few hundred calls).
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Move what lives as long as the process (the application, the rule engine, a Dask worker) out of the
    collector's sight, so that full collections walk only what each call allocates: they took tens of ms, the
    p99 of a hook call. Then collect the young generation only once more has built up than a call holds at its
    peak. Called once a process has built what it keeps."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
