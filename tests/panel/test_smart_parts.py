"""The parts of the Bulk Data client that need no server: scopes in the advertised form, the origin a token may go
to, the keys a client may sign with, Retry-After, the kick-off URL and the options the command refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds.panel.bulk import RETRY_AFTER_MAX_S, _retry_after, kick_off_url
from cds.panel.command import BulkArgs, bulk_misuse
from cds.panel.smart import TokenError, load_client, same_origin, scopes_for


def test_scopes_follow_the_form_the_server_advertises() -> None:
    assert scopes_for(["Patient", "Goal"], ["system/*.rs", "launch"]) == "system/*.rs"
    assert scopes_for(["Patient", "Goal"], ["system/Patient.rs", "system/Goal.rs"]) == "system/Patient.rs system/Goal.rs"
    assert scopes_for(["Patient"], ["permission-v2", "client-confidential-asymmetric"]) == "system/Patient.rs"
    assert scopes_for(["Patient", "Goal"], ["system/*.read"]) == "system/*.read"
    assert scopes_for(["Patient", "Goal"], ["permission-v1"]) == "system/Patient.read system/Goal.read"


@pytest.mark.parametrize(("url", "own"), [
    ("https://ehr.example.org/fhir/files/1.ndjson", True),
    ("https://ehr.example.org:443/other/2.ndjson", True),
    ("https://EHR.example.org/fhir/files/1.ndjson", True),
    ("http://ehr.example.org/fhir/files/1.ndjson", False),
    ("https://ehr.example.org:8443/fhir/files/1.ndjson", False),
    ("https://files.example.org/1.ndjson", False),
    ("https://ehr.example.org.evil.example/1.ndjson", False),
    ("https://ehr.example.org@evil.example/1.ndjson", False),
])
def test_the_token_goes_only_to_the_servers_own_origin(url: str, own: bool) -> None:
    assert same_origin(url, "https://ehr.example.org/fhir") is own


def _pem(key: object, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                       serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def test_a_client_signs_rs384_or_es384_and_nothing_else(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert load_client("c", _pem(rsa_key, tmp_path / "rsa.pem"), "k").algorithm == "RS384"
    ec_key = ec.generate_private_key(ec.SECP384R1())
    assert load_client("c", _pem(ec_key, tmp_path / "ec.pem")).algorithm == "ES384"
    with pytest.raises(TokenError, match="neither RSA nor EC P-384"):
        load_client("c", _pem(ec.generate_private_key(ec.SECP256R1()), tmp_path / "p256.pem"))
    with pytest.raises(TokenError, match="at least 2048"):
        load_client("c", _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024), tmp_path / "s.pem"))
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(TokenError, match="cannot be read") as refused:
        load_client("c", tmp_path / "bad.pem")
    assert "not a key" not in str(refused.value)


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("5", 5.0), ("0", 0.1), ("1e9", RETRY_AFTER_MAX_S), ("Wed, 21 Oct 2026 07:28:00 GMT", RETRY_AFTER_MAX_S),
    ("nan", None), ("", None),
])
def test_retry_after_is_honoured_within_bounds(header: str | None, seconds: float | None) -> None:
    assert _retry_after(header) == seconds


def test_the_kick_off_asks_for_the_group_or_every_patient_and_the_types_read() -> None:
    assert kick_off_url("https://ehr.example.org/fhir/", "panel-7", ["Patient", "Goal"]) == \
        "https://ehr.example.org/fhir/Group/panel-7/$export?_type=Patient,Goal"
    assert kick_off_url("https://ehr.example.org/fhir", None, ["Patient"], "2026-11-19T08:00:00Z") == \
        "https://ehr.example.org/fhir/Patient/$export?_type=Patient&_since=2026-11-19T08%3A00%3A00Z"


@pytest.mark.parametrize(("bulk", "folder", "production", "why"), [
    (BulkArgs("https://ehr.example.org/fhir"), "export", False, "not both"),
    (BulkArgs(None, group="g"), None, False, "need --fhir-server"),
    (BulkArgs("https://ehr.example.org/fhir", client_id="c"), None, False, "go together"),
    (BulkArgs("http://ehr.example.org/fhir"), None, False, "https URL (or http to loopback)"),
    (BulkArgs("http://127.0.0.1:8080/fhir"), None, True, "https URL"),
    (BulkArgs("https://ehr.example.org/fhir", key_id="k"), None, False, "--key-id needs --client-id"),
    (BulkArgs(None, since="auto"), None, False, "need --fhir-server"),
    (BulkArgs("https://ehr.example.org/fhir", since="yesterday"), None, False, "auto or an instant"),
    (BulkArgs("https://ehr.example.org/fhir", since="2026-12-01"), None, False, "auto or an instant"),
    (BulkArgs("https://ehr.example.org/fhir", since="2026-12-01T02:00:00"), None, False, "with its offset"),
])
def test_unusable_source_options_are_refused(bulk: BulkArgs, folder: str | None, production: bool, why: str) -> None:
    problem = bulk_misuse(bulk, folder, production)
    assert problem is not None and why in problem


def test_usable_source_options_pass() -> None:
    assert bulk_misuse(BulkArgs("http://127.0.0.1:8080/fhir", group="g"), None, False) is None
    assert bulk_misuse(BulkArgs("https://ehr.example.org/fhir", client_id="c", private_key="k.pem"), None, True) \
        is None
    for since in ("auto", "2026-12-01T02:00:00Z", "2026-12-01T02:00:00.123+01:00"):
        assert bulk_misuse(BulkArgs("https://ehr.example.org/fhir", since=since), None, True) is None
