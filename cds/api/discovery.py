"""GET /cds-services: the discovery document, from the service definitions."""

from flask import Blueprint, Response

from cds.api.error_handler import json_response
from cds.hooks.models import DiscoveryResponse
from cds.runtime import runtime

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services")
def discovery() -> Response:
    services = [service.definition for service in runtime().services.values()]
    return json_response(DiscoveryResponse(services=services).to_json())
