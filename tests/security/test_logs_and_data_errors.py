"""Data never makes a 5xx and never reaches the log: overflowing numbers and drafts that fail validation are a
400; a sentinel name put in every text of hostile and fuzzed requests is absent from the server's log; control
characters from requests are escaped in the log and in `feedback report`."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveService
from tests.hostile.test_hostile_requests import CASES
from tests.support import data
from tests.support.examples import example

Start = Callable[..., LiveService]
SENTINEL = "Zebediah-Quillfeather"
PV = "/cds-services/pacing-review"
SIGN = "/cds-services/exercise-order-sign"


def with_sentinel(body: Any) -> Any:
    """Every string value that is free text (names, notes, displays) replaced by the sentinel."""
    if isinstance(body, dict):
        return {k: SENTINEL if k in ("family", "text", "display", "given", "comment") and isinstance(v, str)
                else [SENTINEL] if k == "given" else with_sentinel(v) for k, v in body.items()}
    if isinstance(body, list):
        return [with_sentinel(v) for v in body]
    return body


def sign_with(field: str, value: Any) -> dict[str, Any]:
    body = with_sentinel(data.order_request("order-sign", "log-1"))
    body["context"]["draftOrders"]["entry"][0]["resource"]["occurrenceTiming"]["repeat"][field] = value
    return body


def fuzzed(seed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The request with each resource field in turn set to the sentinel, a huge number or a nested object."""
    for key, bundle in seed.get("prefetch", {}).items():
        entries = bundle.get("entry") or [] if isinstance(bundle, dict) else []
        for field in list(entries[0]["resource"]) if entries else []:
            for value in (SENTINEL, 1e308, {SENTINEL: [SENTINEL]}, [SENTINEL]):
                body = copy.deepcopy(seed)
                body["prefetch"][key]["entry"][0]["resource"][field] = value
                yield body


@pytest.fixture
def service(live_service: Start) -> LiveService:
    return live_service(now="2026-11-20T09:00:00Z")


@pytest.mark.parametrize(("field", "value"), [("duration", 1e308), ("period", 1e-308), ("frequency", 10**300)])
def test_extreme_numbers_are_a_400_or_an_answer_never_a_500(service: LiveService, http: httpx.Client, field: str,
                                                            value: float) -> None:
    response = http.post(service.url + SIGN, json=sign_with(field, value))
    assert response.status_code in (200, 400), response.text[:300]
    assert SENTINEL not in service.log()


def test_a_draft_that_fails_validation_is_a_400_and_its_text_stays_out_of_the_log(service: LiveService,
                                                                                   http: httpx.Client) -> None:
    body = sign_with("duration", 30)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["intent"] = {SENTINEL: SENTINEL}
    draft["note"] = [{"text": SENTINEL, "authorString": {"nested": SENTINEL}}]
    response = http.post(service.url + SIGN, json=body)
    assert response.status_code == 400
    assert SENTINEL not in response.text
    assert SENTINEL not in service.log()


def test_hostile_and_fuzzed_requests_leave_no_sentinel_in_the_log(service: LiveService, http: httpx.Client) -> None:
    statuses: dict[int, int] = {}
    for _name, path, body, content_type, _expected in CASES:
        text = body.decode("utf-8", "replace").replace("Example", SENTINEL).encode()
        response = http.post(service.url + path, content=text, headers={"Content-Type": content_type})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    seed = with_sentinel(example("progress-walking")[0])
    for body in fuzzed(seed):
        response = http.post(service.url + PV, json=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert not any(status >= 500 for status in statuses), statuses
    log = service.log()
    assert SENTINEL not in log
    assert "Traceback" not in log


def test_control_characters_cannot_forge_log_lines(service: LiveService, http: httpx.Client) -> None:
    http.get(service.url + "/cds-services/x%0a2026-01-01 00:00:00,000 INFO cds.api forged%1b[31m")
    lines = service.log().splitlines()
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in lines), "no forged line"
    assert not any("\x1b" in line for line in lines)


def test_feedback_report_escapes_terminal_control_characters(service: LiveService, http: httpx.Client,
                                                             tmp_path: Path) -> None:
    feedback = {"feedback": [{"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T09:00:00Z",
                              "overrideReason": {"reason": {"code": "x\x1b[2J", "system": "s",
                                                            "display": "evil\x1b]0;owned\x07\nforged"}}}]}
    assert http.post(service.url + PV + "/feedback", json=feedback).status_code == 200
    report = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "feedback", "report"],
                            env=service.env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0
    assert "\x1b" not in report.stdout and "\x07" not in report.stdout
    assert "\\x1b" in report.stdout and not any(line.startswith("forged") for line in report.stdout.splitlines())
