"""GET /openapi.json: an OpenAPI 3.1 document generated from the pydantic models the endpoints validate with."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome
from flask import Blueprint, Response, current_app
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from cds.api.error_handler import json_response
from cds.hooks.models import CdsRequest, CdsResponse, DiscoveryResponse, FeedbackRequest
from cds.runtime import runtime
from cds.services.base import CdsService

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"
CACHE = "pacing_cds_openapi"
ERRORS = {"400": "malformed request or invalid data", "401": "no valid client JWT (when authentication is on)",
          "404": "no such service", "412": "prefetch data that can be had neither from the request nor fhirServer",
          "413": "body over PACING_CDS_MAX_BODY_BYTES", "415": "not JSON",
          "503": "database or replay cache unavailable"}


@bp.get("/openapi.json")
def openapi() -> Response:
    if CACHE not in current_app.extensions:
        rt = runtime()
        current_app.extensions[CACHE] = document(rt.services, rt.settings.base_url, rt.auth is not None,
                                                 rt.settings.metrics_port is None)
    return json_response(current_app.extensions[CACHE])


TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the random token of a card's link"}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _outcome(ref: dict[Any, Any]) -> dict[str, Any]:
    return _json(ref[OperationOutcome], "unknown, malformed (404) or expired (410) token")


def document(services: dict[str, CdsService], base_url: str, auth: bool, metrics: bool) -> dict[str, Any]:
    """The whole document: one path per service, the feedback endpoints, discovery, health, metrics."""
    contexts = {service.context_model for service in services.values()}
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (CdsRequest, "validation"), (FeedbackRequest, "validation"), (CdsResponse, "serialization"),
        (DiscoveryResponse, "serialization"), (OperationOutcome, "serialization"),
        *((model, "validation") for model in sorted(contexts, key=lambda m: m.__name__)),
    ]
    refs, schemas = models_json_schema(models, ref_template=REF)
    ref = {model: refs[(model, mode)] for model, mode in models}
    paths: dict[str, Any] = {
        "/cds-services": {"get": _operation("discovery", "The CDS services, their hooks and prefetch templates",
                                            ref[DiscoveryResponse], ref[OperationOutcome], auth)},
        "/healthz": {"get": {"operationId": "health", "summary": "Readiness: 200 when this process can answer "
                             "(database up and, with client authentication, the replay cache)",
                             "security": [],
                             "responses": {"200": _json({"type": "object", "properties": {
                                 "status": {"type": "string", "const": "ok"}}}, "ready"),
                                 "503": _json(ref[OperationOutcome], "database or replay cache unreachable")}}},
        "/livez": {"get": {"operationId": "live", "summary": "Liveness: 200 while the process answers at all",
                           "security": [],
                           "responses": {"200": _json({"type": "object", "properties": {
                               "status": {"type": "string", "const": "ok"}}}, "the process answers")}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        "/rules": {"get": {"operationId": "rules", "summary": "The rule set as a page; cards link to its anchors",
                           "security": [], "responses": {"200": _html("every rule, parameter and value set")}}},
        "/charts/{token}": {"get": {"operationId": "chart", "summary": "The pacing chart behind a card's link",
                                    "security": [], "parameters": [TOKEN],
                                    "responses": {"200": _html("the chart"), "404": _outcome(ref),
                                                  "410": _outcome(ref)}}},
        "/charts/{token}/plan": {"get": {"operationId": "plan", "summary": "The patient's take-home plan",
                                         "security": [], "parameters": [TOKEN],
                                         "responses": {"200": _html("the plan"), "404": _outcome(ref),
                                                       "410": _outcome(ref)}}},
    }
    for service in services.values():
        request = {"allOf": [ref[CdsRequest], {"type": "object", "properties": {
            "hook": {"const": service.hook}, "context": ref[service.context_model]}}]}
        call = _operation(f"call-{service.id}", service.definition.title or service.id, ref[CdsResponse],
                          ref[OperationOutcome], auth, request)
        call["description"] = service.definition.description
        feedback = _operation(f"feedback-{service.id}", f"Feedback on the cards of {service.id}",
                              {"type": "object", "properties": {"received": {"type": "integer"},
                                                                "stored": {"type": "integer"}}},
                              ref[OperationOutcome], auth, ref[FeedbackRequest])
        paths[f"/cds-services/{service.id}"] = {"post": call}
        paths[f"/cds-services/{service.id}/feedback"] = {"post": feedback}
    if metrics:
        paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus metrics, every worker counted",
                                     "responses": {"200": {"description": "Prometheus text format",
                                                           "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    components: dict[str, Any] = {"schemas": schemas.get("$defs", {})}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Pacing CDS", "version": _version(),
                 "description": "CDS Hooks 2.0 services for activity pacing and graded exercise progression."},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": components,
    }
    if auth:
        components["securitySchemes"] = {"cdsClientJwt": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "CDS Hooks 2.0 client JWT: signed by a trusted issuer, aud = the URL called, "
                           "a jti used once"}}
        doc["security"] = [{"cdsClientJwt": []}]
    return doc


def _operation(operation_id: str, summary: str, answer: dict[str, Any], error: dict[str, Any], auth: bool,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    responses = {"200": _json(answer, "success")}
    for status, why in ERRORS.items():
        if body is not None or status in ("401", "503"):
            responses[status] = _json(error, why)
    if not auth:
        responses.pop("401", None)
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _version() -> str:
    try:
        return version("pacing-cds")
    except PackageNotFoundError:  # run from a checkout without installing
        return "0+unknown"
