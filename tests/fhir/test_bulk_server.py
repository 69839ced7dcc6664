"""Bulk Data $export and SMART Backend Services as sekmet-fhir 0.1.1 serves them: a real server on 127.0.0.1,
real client assertions signed with PyJWT (RS384 and ES384), httpx only. These tests pin what a Bulk client can be
tested against (and what it cannot: sekmet never answers 429/503 and never asks for more than Retry-After: 1)."""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.fhir_server import ASSERTION_TYPE, TOKEN, FhirServer, SmartClient

pytestmark = pytest.mark.slow  # asks a FHIR server for Bulk Data exports

PREFER = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def rs_client() -> SmartClient:
    return SmartClient.generate("bulk-rs384", "RS384")


@pytest.fixture(scope="module")
def es_client() -> SmartClient:
    """Registered for reading only: sekmet grants no scope beyond the registration."""
    return SmartClient.generate("bulk-es384", "ES384", scopes="system/*.read")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, rs_client: SmartClient,
           es_client: SmartClient) -> Iterator[FhirServer]:
    """Bearer TOKEN (to load data) and SMART Backend Services together; jobs answer 202 for about 1 s."""
    fhir = FhirServer(tmp_path_factory.mktemp("sekmet-bulk"), smart_clients=[rs_client, es_client])
    yield fhir
    fhir.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(server: FhirServer, patients: int = 3, observations: int = 2, group_size: int = 2) -> dict[str, Any]:
    """Patients with Observations (alternately final and preliminary) and a Group of the first `group_size`."""
    tag = uuid.uuid4().hex[:8]
    pids = [f"bp-{tag}-{i}" for i in range(patients)]
    resources: list[dict[str, Any]] = []
    for i, pid in enumerate(pids):
        resources.append({"resourceType": "Patient", "id": pid, "name": [{"family": f"Bulk{i}"}],
                          "gender": "female", "birthDate": "1950-01-01"})
        for j in range(observations):
            resources.append({
                "resourceType": "Observation", "id": f"{pid}-o{j}", "status": "final" if j % 2 == 0 else "preliminary",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "valueQuantity": {"value": 60 + j, "unit": "/min", "system": "http://unitsofmeasure.org",
                                  "code": "/min"}})
    server.load(resources)
    group_id = f"bg-{tag}"
    server.load_group(group_id, pids[:group_size])
    return {"group": group_id, "members": pids[:group_size], "others": pids[group_size:],
            "resources": {r["id"]: r for r in resources}}


def retry_after_s(value: str | None) -> float:
    """Retry-After as delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None:
        return 1.0
    if value.strip().isdigit():
        return float(value)
    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())


def kick_off(server: FhirServer, http: httpx.Client, token: str, path: str,
             params: dict[str, str] | None = None) -> httpx.Response:
    return http.get(f"{server.base_url}/{path}", params=params, headers={**PREFER, **bearer(token)})


def follow(http: httpx.Client, status_url: str, token: str, timeout_s: float = 30.0
           ) -> tuple[httpx.Response, list[httpx.Response]]:
    """Poll the status endpoint, sleeping as long as each 202 asks; the final answer and the 202s seen."""
    deadline = time.monotonic() + timeout_s
    waits: list[httpx.Response] = []
    while True:
        response = http.get(status_url, headers=bearer(token))
        if response.status_code != 202:
            return response, waits
        waits.append(response)
        assert time.monotonic() < deadline, "export did not finish in time"
        time.sleep(retry_after_s(response.headers.get("Retry-After")))


def download(http: httpx.Client, manifest: dict[str, Any], token: str, key: str = "output"
             ) -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest, with the token when it says so; resources by type."""
    files: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest[key]:
        headers = bearer(token) if manifest["requiresAccessToken"] else {}
        response = http.get(entry["url"], headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        assert len(lines) == entry["count"]
        assert {r["resourceType"] for r in lines} == {entry["type"]}
        files.setdefault(entry["type"], []).extend(lines)
    return files


def export(server: FhirServer, http: httpx.Client, token: str, path: str,
           params: dict[str, str] | None = None) -> dict[str, Any]:
    kick = kick_off(server, http, token, path, params)
    assert kick.status_code == 202, kick.text
    final, _ = follow(http, kick.headers["Content-Location"], token)
    assert final.status_code == 200, final.text
    manifest: dict[str, Any] = final.json()
    return manifest


# ---------------- SMART Backend Services ----------------


def test_smart_configuration_advertises_backend_services(server: FhirServer, http: httpx.Client) -> None:
    response = http.get(f"{server.base_url}/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == server.token_url == f"{server.root_url}/auth/token"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert config["grant_types_supported"] == ["client_credentials"]
    assert {"system/*.read", "system/*.rs"} <= set(config["scopes_supported"])
    assert {"client-confidential-asymmetric", "permission-v1", "permission-v2"} <= set(config["capabilities"])
    assert "issuer" not in config
    # the same document at the server root, and the token URL in the CapabilityStatement (no auth needed there)
    assert http.get(f"{server.root_url}/.well-known/smart-configuration").json() == config
    security = http.get(f"{server.base_url}/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"] == [{"url": "token", "valueUri": server.token_url}]


@pytest.mark.parametrize(("algorithm", "scope"), [
    ("RS384", "system/*.read"),
    ("ES384", "system/*.read"),
    ("RS384", "system/Patient.rs system/Observation.rs"),
    ("ES384", "system/Patient.read system/Group.read"),
])
def test_a_signed_client_assertion_gets_an_access_token(server: FhirServer, http: httpx.Client,
                                                        rs_client: SmartClient, es_client: SmartClient,
                                                        algorithm: str, scope: str) -> None:
    client = rs_client if algorithm == "RS384" else es_client
    form = client.token_request(server.token_url, scope)
    assert form["grant_type"] == "client_credentials" and form["client_assertion_type"] == ASSERTION_TYPE
    response = http.post(server.token_url, data=form)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == scope
    assert http.get(f"{server.base_url}/Patient", headers=bearer(token["access_token"])).status_code == 200


def test_granted_scopes_are_the_requested_ones_the_registration_covers(server: FhirServer, http: httpx.Client,
                                                                       rs_client: SmartClient,
                                                                       es_client: SmartClient) -> None:
    # no scope asked: the client's registered scopes
    assert server.smart_token(es_client, scope=None)["scope"] == "system/*.read"
    # scopes the server does not know are dropped silently
    assert server.smart_token(rs_client, scope="system/*.read launch offline_access")["scope"] == "system/*.read"
    # beyond the registration: invalid_scope
    response = http.post(server.token_url, data=es_client.token_request(server.token_url, "system/*.write"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    # the scopes are enforced on every FHIR request
    token = server.smart_token(rs_client, scope="system/Patient.rs")["access_token"]
    assert http.get(f"{server.base_url}/Patient", headers=bearer(token)).status_code == 200
    forbidden = http.get(f"{server.base_url}/Observation", headers=bearer(token))
    assert forbidden.status_code == 403 and forbidden.json()["issue"][0]["code"] == "forbidden"
    write = http.post(f"{server.base_url}/Patient", json={"resourceType": "Patient"}, headers=bearer(token))
    assert write.status_code == 403


@pytest.mark.parametrize(("case", "status", "error"), [
    ("audience is the FHIR base, not the token endpoint", 401, "invalid_client"),
    ("expires more than 5 minutes ahead", 401, "invalid_client"),
    ("already expired", 401, "invalid_client"),
    ("sub differs from iss", 401, "invalid_client"),
    ("no jti", 401, "invalid_client"),
    ("unknown client", 401, "invalid_client"),
    ("signed with another key", 401, "invalid_client"),
    ("jti replayed", 401, "invalid_client"),
    ("wrong client_assertion_type", 400, "invalid_request"),
    ("grant type password", 400, "unsupported_grant_type"),
])
def test_bad_token_requests_are_refused(server: FhirServer, http: httpx.Client, rs_client: SmartClient,
                                        case: str, status: int, error: str) -> None:
    url = server.token_url
    forms: dict[str, Any] = {
        "audience is the FHIR base, not the token endpoint": lambda: rs_client.token_request(
            url, claims={"aud": server.base_url}),
        "expires more than 5 minutes ahead": lambda: rs_client.token_request(url, lifetime_s=600),
        "already expired": lambda: rs_client.token_request(url, lifetime_s=-10),
        "sub differs from iss": lambda: rs_client.token_request(url, claims={"sub": "someone-else"}),
        "no jti": lambda: rs_client.token_request(url, claims={"jti": None}),
        "unknown client": lambda: rs_client.token_request(url, claims={"iss": "stranger", "sub": "stranger"}),
        "signed with another key": lambda: SmartClient.generate(rs_client.client_id, "RS384",
                                                                kid=rs_client.kid).token_request(url),
        "wrong client_assertion_type": lambda: {**rs_client.token_request(url),
                                                "client_assertion_type": "urn:example:other"},
        "grant type password": lambda: {**rs_client.token_request(url), "grant_type": "password"},
    }
    if case == "jti replayed":
        form = rs_client.token_request(url)
        assert http.post(url, data=form).status_code == 200
    else:
        form = forms[case]()
    response = http.post(url, data=form)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_an_expired_access_token_is_401_and_a_new_assertion_renews_it(tmp_path_factory: pytest.TempPathFactory,
                                                                      rs_client: SmartClient,
                                                                      http: httpx.Client) -> None:
    """SMART only (no static token) and a 2 s token lifetime: an export outlives its token."""
    fhir = FhirServer(tmp_path_factory.mktemp("sekmet-short"), smart_client=rs_client, static_token=False,
                      token_lifetime_s=2)
    try:
        assert http.get(f"{fhir.base_url}/Patient", headers=bearer(TOKEN)).status_code == 401
        data = seed(fhir, patients=2, observations=1)
        token = fhir.smart_token(rs_client)
        assert token["expires_in"] == 2
        kick = kick_off(fhir, http, token["access_token"], f"Group/{data['group']}/$export")
        assert kick.status_code == 202
        time.sleep(token["expires_in"] + 0.5)  # sekmet's exp is int(now) + lifetime: never later than this
        expired = http.get(kick.headers["Content-Location"], headers=bearer(token["access_token"]))
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"].startswith("Bearer")
        assert expired.json()["issue"][0]["code"] == "expired"
        renewed = fhir.smart_token(rs_client)["access_token"]  # a fresh assertion (new jti)
        final, _ = follow(http, kick.headers["Content-Location"], renewed)
        assert final.status_code == 200
        assert len(download(http, final.json(), renewed)["Patient"]) == 2
    finally:
        fhir.stop()


# ---------------- Bulk Data $export ----------------


def test_group_export_end_to_end(server: FhirServer, http: httpx.Client, rs_client: SmartClient) -> None:
    data = seed(server, patients=3, observations=3, group_size=2)
    token = server.smart_token(rs_client, scope="system/*.read")["access_token"]
    kick = kick_off(server, http, token, f"Group/{data['group']}/$export", {"_type": "Patient,Observation"})
    assert kick.status_code == 202, kick.text
    assert kick.content == b""
    status_url = kick.headers["Content-Location"]
    assert status_url.startswith(f"{server.base_url}/bulk-status/")
    final, waits = follow(http, status_url, token)
    assert waits, "sekmet keeps a job in progress for about a second"
    for wait in waits:
        assert wait.headers["Retry-After"] == "1"
        assert wait.headers["X-Progress"] in {"queued", "collecting", "writing"}
    assert final.status_code == 200
    assert final.headers["content-type"].startswith("application/json")
    manifest = final.json()
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    assert manifest["request"].startswith(f"{server.base_url}/Group/{data['group']}/$export?_type=")
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert sorted(o["type"] for o in manifest["output"]) == ["Observation", "Patient"]
    # the files need the token too
    assert http.get(manifest["output"][0]["url"]).status_code == 401
    files = download(http, manifest, token)
    assert sorted(p["id"] for p in files["Patient"]) == sorted(data["members"])
    assert len(files["Observation"]) == 2 * 3
    assert {o["subject"]["reference"] for o in files["Observation"]} == {f"Patient/{p}" for p in data["members"]}
    # the same status URL answers the same manifest again (jobs are kept until DELETE or restart)
    assert http.get(status_url, headers=bearer(token)).json() == manifest


def test_without_type_a_group_export_holds_every_resource_referencing_a_member(server: FhirServer,
                                                                              http: httpx.Client) -> None:
    data = seed(server, patients=2, observations=1, group_size=1)
    manifest = export(server, http, TOKEN, f"Group/{data['group']}/$export")
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts == {"Group": 1, "Observation": 1, "Patient": 1}  # the Group references the member too


@pytest.mark.parametrize("level", ["$export", "Patient/$export"])
def test_system_and_patient_level_exports(server: FhirServer, http: httpx.Client, level: str) -> None:
    data = seed(server, patients=2, observations=1)
    manifest = export(server, http, TOKEN, level, {"_type": "Patient"})
    ids = {p["id"] for p in download(http, manifest, TOKEN)["Patient"]}
    assert set(data["members"]) | set(data["others"]) <= ids


def test_type_filter_narrows_a_type(server: FhirServer, http: httpx.Client) -> None:
    data = seed(server, patients=2, observations=4)
    manifest = export(server, http, TOKEN, f"Group/{data['group']}/$export",
                      {"_type": "Observation", "_typeFilter": "Observation?status=final"})
    observations = download(http, manifest, TOKEN)["Observation"]
    assert len(observations) == 2 * 2 and {o["status"] for o in observations} == {"final"}


def test_since_exports_only_resources_changed_after_the_instant(server: FhirServer, http: httpx.Client,
                                                                rs_client: SmartClient) -> None:
    data = seed(server, patients=2, observations=2)
    token = server.smart_token(rs_client)["access_token"]
    first = export(server, http, token, f"Group/{data['group']}/$export", {"_type": "Patient,Observation"})
    assert {o["type"]: o["count"] for o in first["output"]} == {"Patient": 2, "Observation": 4}
    since = first["transactionTime"]  # the instant to use for the next incremental export
    patient, observation = data["members"][0], f"{data['members'][1]}-o0"
    server.load([{**data["resources"][patient], "gender": "male"},
                 {**data["resources"][observation], "status": "amended"}])
    second = export(server, http, token, f"Group/{data['group']}/$export",
                    {"_type": "Patient,Observation", "_since": since})
    assert "_since=" in second["request"]
    files = download(http, second, token)
    assert [p["id"] for p in files["Patient"]] == [patient]
    assert [o["id"] for o in files["Observation"]] == [observation]
    assert all(r["meta"]["lastUpdated"] >= since for rs in files.values() for r in rs)
    assert second["transactionTime"] > since


def test_delete_cancels_a_job_and_removes_its_files(server: FhirServer, http: httpx.Client,
                                                    rs_client: SmartClient) -> None:
    data = seed(server, patients=1, observations=1, group_size=1)
    reader = server.smart_token(rs_client, scope="system/*.read")["access_token"]
    writer = server.smart_token(rs_client, scope="system/*.*")["access_token"]
    kick = kick_off(server, http, reader, f"Group/{data['group']}/$export")
    status_url = kick.headers["Content-Location"]
    final, _ = follow(http, status_url, reader)
    file_url = final.json()["output"][0]["url"]
    # DELETE needs the 'd' permission on '*' (bulk-status is no resource type): a read token cannot cancel
    assert http.delete(status_url, headers=bearer(reader)).status_code == 403
    deleted = http.delete(status_url, headers=bearer(writer))
    assert deleted.status_code == 202
    assert deleted.json()["issue"][0]["diagnostics"] == "Export cancelled"
    assert http.get(status_url, headers=bearer(reader)).status_code == 404
    assert http.get(file_url, headers=bearer(reader)).status_code == 404
    assert http.delete(status_url, headers=bearer(writer)).status_code == 404
    # a job still in progress can be cancelled as well
    running = kick_off(server, http, writer, f"Group/{data['group']}/$export")
    assert http.delete(running.headers["Content-Location"], headers=bearer(writer)).status_code == 202
    assert http.get(running.headers["Content-Location"], headers=bearer(writer)).status_code == 404


def test_unsupported_parameters_give_an_error_file_or_with_strict_handling_a_400(server: FhirServer,
                                                                                  http: httpx.Client) -> None:
    data = seed(server, patients=1, observations=1, group_size=1)
    params = {"_type": "Patient", "includeAssociatedData": "LatestProvenanceResources"}
    manifest = export(server, http, TOKEN, f"Group/{data['group']}/$export", params)
    [entry] = manifest["error"]
    assert entry["type"] == "OperationOutcome" and entry["count"] == 1
    [outcome] = download(http, manifest, TOKEN, key="error")["OperationOutcome"]
    assert outcome["issue"][0]["severity"] == "warning" and outcome["issue"][0]["code"] == "not-supported"
    assert "includeAssociatedData" in outcome["issue"][0]["diagnostics"]
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    strict = http.get(f"{server.base_url}/Group/{data['group']}/$export", params=params,
                      headers={**PREFER, "Prefer": "respond-async, handling=strict", **bearer(TOKEN)})
    assert strict.status_code == 400 and strict.json()["issue"][0]["code"] == "not-supported"


def test_a_failed_job_answers_500_with_an_operation_outcome(server: FhirServer, http: httpx.Client) -> None:
    """The only way to make a job fail: a _typeFilter value its search cannot parse."""
    data = seed(server, patients=1, observations=1, group_size=1)
    kick = kick_off(server, http, TOKEN, f"Group/{data['group']}/$export",
                    {"_typeFilter": "Observation?date=not-a-date"})
    assert kick.status_code == 202
    final, _ = follow(http, kick.headers["Content-Location"], TOKEN)
    assert final.status_code == 500
    outcome = final.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "exception"
    assert "not-a-date" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("case", "status"), [
    ("no Prefer: respond-async", 400),
    ("_outputFormat json", 400),
    ("unknown Group", 404),
    ("instance-level Patient export", 400),
    ("no token", 401),
    ("Accept text/csv", 406),
])
def test_kick_off_errors(server: FhirServer, http: httpx.Client, case: str, status: int) -> None:
    data = seed(server, patients=1, observations=0, group_size=1)
    path, params, headers = f"Group/{data['group']}/$export", {}, {**PREFER, **bearer(TOKEN)}
    if case == "no Prefer: respond-async":
        headers.pop("Prefer")
    elif case == "_outputFormat json":
        params["_outputFormat"] = "application/fhir+json"
    elif case == "unknown Group":
        path = "Group/no-such-group/$export"
    elif case == "instance-level Patient export":
        path = f"Patient/{data['members'][0]}/$export"
    elif case == "no token":
        headers.pop("Authorization")
    elif case == "Accept text/csv":
        headers["Accept"] = "text/csv"
    response = http.get(f"{server.base_url}/{path}", params=params, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="sekmet"'


def test_scopes_needed_along_the_way(server: FhirServer, http: httpx.Client, rs_client: SmartClient) -> None:
    """Kick-off is checked against the URL's type, status and files against '*': a token of resource scopes
    alone can start a Group export but not follow it; a POST kick-off needs the create permission."""
    data = seed(server, patients=1, observations=1, group_size=1)
    narrow = server.smart_token(rs_client, scope="system/Group.rs system/Patient.rs")["access_token"]
    kick = kick_off(server, http, narrow, f"Group/{data['group']}/$export")
    assert kick.status_code == 202
    assert http.get(kick.headers["Content-Location"], headers=bearer(narrow)).status_code == 403
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]}
    url = f"{server.base_url}/Group/{data['group']}/$export"
    reader = server.smart_token(rs_client, scope="system/*.read")["access_token"]
    assert http.post(url, json=parameters, headers={**PREFER, **bearer(reader)}).status_code == 403
    writer = server.smart_token(rs_client, scope="system/*.*")["access_token"]
    posted = http.post(url, json=parameters, headers={**PREFER, **bearer(writer)})
    assert posted.status_code == 202
    final, _ = follow(http, posted.headers["Content-Location"], writer)
    assert [o["type"] for o in final.json()["output"]] == ["Patient"]


def test_a_listed_file_that_is_gone_is_404(server: FhirServer, http: httpx.Client) -> None:
    """sekmet cannot be told to lose a file; removing it from its data_dir gives the 404 a client must handle."""
    data = seed(server, patients=1, observations=1, group_size=1)
    manifest = export(server, http, TOKEN, f"Group/{data['group']}/$export", {"_type": "Patient,Observation"})
    lost, kept = manifest["output"]
    server.bulk_file(lost["url"]).unlink()
    missing = http.get(lost["url"], headers=bearer(TOKEN))
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"
    assert http.get(kept["url"], headers=bearer(TOKEN)).status_code == 200
