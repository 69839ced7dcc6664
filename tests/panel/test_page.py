"""worklist.html: one file a team lead opens, with nothing fetched from anywhere, in a real browser."""

from __future__ import annotations

import os
import re

import pytest

from bench.screenshot import chromium, dump_dom
from cds.engine import load_knowledge
from tests.conftest import ROOT
from tests.panel.conftest import Run


def test_the_page_is_self_contained(cluster_run: Run) -> None:
    page = (cluster_run.out / "worklist.html").read_text()
    assert not re.search(r"(?i)<script|<link|<img|<iframe|\bsrc=|\bhref=|url\(|@import", page)


def test_the_page_shows_counts_and_who_needs_action_first(cluster_run: Run) -> None:
    if chromium() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    dom = dump_dom(cluster_run.out / "worklist.html")
    assert "<h2>Recommendations</h2>" in dom
    action = re.search(r"<h2>Needs action first \((\d+)\)</h2>(.*?)<h2>Everyone else \((\d+)\)</h2>", dom, re.S)
    assert action is not None
    patients = re.findall(r"<td>Patient/([^<]+)</td>", dom)
    assert len(patients) == len(set(patients)) == int(action[1]) + int(action[3])
    order = tuple(load_knowledge(ROOT / "rules").info.needs_action)
    assert {"red-flag", "data-quality", "data-gap"} <= set(order)
    ranks = [min(order.index(c) for c in re.findall(r'class="code ([a-z-]+)"', cell) if c in order)
             for cell in re.findall(r"<tr><td>Patient/[^<]+</td><td>(.*?)</td>", action[2])]
    assert ranks and ranks == sorted(ranks), "red flags first, then step-back, re-baseline, data gap"
