"""GET /openapi.json: a valid OpenAPI 3.1 document of every endpoint, generated from the wire models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from cds import create_app
from cds.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def request_validator(doc: dict[str, Any], path: str) -> Draft202012Validator:
    """A JSON Schema validator for the request body of `path`, $refs resolved inside the document."""
    pointer = "/".join(["#", "paths", path.replace("/", "~1"), "post", "requestBody", "content",
                        "application~1json", "schema"])
    return Draft202012Validator({**doc, "$ref": pointer})


def test_document_is_valid_openapi_3_1_and_lists_every_endpoint(app: Flask, client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    services = [s["id"] for s in client.get("/cds-services").get_json()["services"]]
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    for rule, method in routes:
        expanded = [rule.replace("<service_id>", sid) for sid in services] if "<service_id>" in rule else [
            re.sub(r"<(\w+)>", r"{\1}", rule)]  # Flask's <token> is OpenAPI's {token}
        for path in expanded:
            assert (path, method) in documented, f"{method} {path} is not in the OpenAPI document"
    assert "securitySchemes" not in doc["components"], "no authentication configured: none documented"


def test_request_schemas_accept_the_examples_and_refuse_what_the_service_refuses(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    for example, service in (("progress-walking", "pacing-review"), ("order-dose-jump", "exercise-order-select")):
        body = json.loads((ROOT / "fhir_examples" / example / "request.json").read_text())
        validator = request_validator(doc, f"/cds-services/{service}")
        assert list(validator.iter_errors(body)) == []
        no_patient = {**body, "context": {k: v for k, v in body["context"].items() if k != "patientId"}}
        assert list(validator.iter_errors(no_patient)), "a context without patientId is refused by the schema"
        assert client.post(f"/cds-services/{service}", json=no_patient).status_code == 400, "and by the service"
    feedback = json.loads((ROOT / "docs/examples/feedback.json").read_text())
    assert list(request_validator(doc, "/cds-services/pacing-review/feedback").iter_errors(feedback)) == []
    error = doc["paths"]["/cds-services/pacing-review"]["post"]["responses"]["412"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}


def test_with_authentication_the_document_names_the_jwt_scheme(tmp_path: Path) -> None:
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text("issuers:\n  - iss: https://ehr.example.org\n    jwks: {keys: []}\n")
    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", issuers_file=str(issuers)))
    try:
        from cds.api.openapi import document
        from cds.runtime import Runtime

        runtime: Runtime = app.extensions["pacing_cds"]
        doc = document(runtime.services, runtime.settings.base_url, auth=True, metrics=True)
        validate(doc)
        assert doc["components"]["securitySchemes"]["cdsClientJwt"]["bearerFormat"] == "JWT"
        assert doc["security"] == [{"cdsClientJwt": []}]
        assert doc["paths"]["/healthz"]["get"]["security"] == [], "the health check stays open"
        assert app.test_client().get("/openapi.json").status_code == 401, "protected like discovery"
    finally:
        app.extensions["pacing_cds"].close()
