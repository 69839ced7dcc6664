"""PACING_CDS_LOG_FORMAT=json: one JSON object per line from the running server, without tokens or patient data."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ROOT, LiveService

Start = Callable[..., LiveService]
ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


def test_json_logs_are_one_object_per_line_with_the_call_fields(live_service: Start, http: httpx.Client,
                                                               tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    service = live_service(issuers_file=str(issuers), public_base_url=BASE, log_format="json")
    jti = str(uuid.uuid4())
    token = jwt.encode({"iss": ISS, "aud": BASE + "/cds-services/pacing-review", "exp": int(time.time()) + 60,
                        "iat": int(time.time()), "jti": jti}, key, algorithm="ES384",
                       headers={"kid": "k1", "typ": "JWT"})
    body = json.loads((ROOT / "fhir_examples/progress-walking/request.json").read_text())
    response = http.post(f"{service.url}/cds-services/pacing-review", json=body,
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert http.get(f"{service.url}/cds-services").status_code == 401
    service.stop()
    lines = [line for line in service.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, gunicorn's own included
    assert all(isinstance(e, dict) and {"time", "level", "event"} <= set(e) for e in entries)
    [call] = [e for e in entries if e["event"] == "service call"]
    assert call["hookInstance"] == body["hookInstance"] and call["service"] == "pacing-review"
    assert call["status"] == 200 and call["iss"] == ISS and call["jti"] == jti
    assert isinstance(call["duration_ms"], float) and call["level"] == "INFO"
    assert any(e["level"] == "WARNING" and e["event"].startswith("401 on GET /cds-services") for e in entries)
    text = service.log()
    assert token not in text and body["context"]["patientId"] not in text
    assert "Observation" not in text, "no resource in the logs"
