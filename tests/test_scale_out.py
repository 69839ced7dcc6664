"""Scale-out proof: two instances (gunicorn, 3 workers each) sharing PostgreSQL and Redis behind a round-robin,
16 concurrent clients x 125 patient-view calls (2,000 distinct patients), every call authenticated.
PACING_CDS_SCALE_CALLS sets the calls per client: 2000 gives the full-size run of 32,000 calls (about 4 minutes on
2 cores)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from cds.store.database import Store
from tests.conftest import LiveService
from tests.support.backing import PostgresServer, RedisServer
from tests.support.examples import example

CLIENTS, CALLS = 16, int(os.environ.get("PACING_CDS_SCALE_CALLS", "125"))
BASE = "https://cds.example.org"
KEY = ec.generate_private_key(ec.SECP384R1())


def token() -> str:
    claims = {"iss": "https://ehr.example.org", "aud": BASE + "/cds-services/pacing-review",
              "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": str(uuid.uuid4())}
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def test_two_instances_16_concurrent_clients_distinct_patients(live_service: Callable[..., LiveService],
                                                              postgres_server: PostgresServer,
                                                              redis_server: RedisServer, tmp_path: Path) -> None:
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]}))
    database = postgres_server.database("scale_out")
    shared = {"database_url": database, "redis_url": redis_server.url, "issuers_file": str(issuers),
              "public_base_url": BASE, "now": "2026-11-20T09:00:00Z", "workers": "3", "threads": "4"}
    instances = [live_service(**shared), live_service(**shared)]
    template = json.dumps(example("progress-walking")[0])
    statuses: dict[int, int] = {}
    foreign: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        local_status: dict[int, int] = {}
        with httpx.Client(timeout=60) as http:
            for n in range(CALLS):
                patient = f"pt-{index}-{n}"
                body = template.replace("progress-walking", patient)
                hook_instance = str(uuid.uuid4())
                body = re.sub(r'"hookInstance": "[^"]+"', f'"hookInstance": "{hook_instance}"', body, count=1)
                target = instances[(index + n) % 2].url  # round-robin
                response = http.post(f"{target}/cds-services/pacing-review", content=body,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token()}"})
                local_status[response.status_code] = local_status.get(response.status_code, 0) + 1
                refs = set(re.findall(r"Patient/([A-Za-z0-9.\-]+)", response.text))
                with lock:
                    sent.append(hook_instance)
                    if response.status_code != 200 or refs != {patient} or \
                            [c["source"]["topic"]["code"] for c in response.json()["cards"]] != ["progress"]:
                        foreign.append(f"{patient}: {response.status_code} {sorted(refs)[:3]}")
        with lock:
            for status, count in local_status.items():
                statuses[status] = statuses.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"\n{CLIENTS * CALLS} calls in {elapsed:.1f} s ({CLIENTS * CALLS / elapsed:.0f}/s); statuses {statuses}")
    assert statuses == {200: CLIENTS * CALLS}, statuses
    assert foreign == [], foreign[:5]
    store = Store(database)
    try:
        audited = [e["hook_instance"] for e in store.audit_events()]
    finally:
        store.close()
    assert len(audited) == CLIENTS * CALLS and sorted(audited) == sorted(sent), "every call audited once"
    for instance in instances:
        assert "Traceback" not in instance.log()
