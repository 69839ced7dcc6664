"""HTTP edge: blueprints, CORS and the error handler, registered on an app by create_app."""

from flask import Flask, g, request

from cds import metrics
from cds.api import (
    chart_pages,
    cors,
    discovery,
    error_handler,
    feedback,
    health,
    metrics_page,
    openapi,
    rules_page,
    service_call,
)
from cds.auth.replay import ReplayCacheError, ReplayCacheUnavailable
from cds.auth.tokens import AuthError
from cds.errors import CdsError
from cds.runtime import runtime
from cds.settings import Settings

# No patient data: a clinician opens /rules from a card; a browser asks for /favicon.ico by itself (404, not 401).
OPEN_PATHS = {"/healthz", "/livez", "/rules", "/favicon.ico"}
# Opened by a person's browser from a card link, which carries no JWT: the random token is the credential.
OPEN_PREFIXES = ("/charts/",)


def register(app: Flask, settings: Settings) -> None:
    cors.register(app, settings.origins)  # first: preflight is answered before authentication
    error_handler.register(app)

    @app.before_request
    def _authenticate() -> None:
        authenticator = runtime().auth
        if authenticator is None or request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return
        try:
            claims = authenticator.verify(request.headers.get("Authorization"), request.path)
        except AuthError as exc:
            metrics.jwt_refused(str(exc))
            error_handler.log.warning("401 on %s %s: %s", request.method, request.path[:200], exc)
            raise unauthorized(exc.public) from exc
        except (ReplayCacheUnavailable, ReplayCacheError) as exc:
            metrics.replay_cache_error()
            error_handler.log.error("replay cache unavailable (%s): calls refused", exc)
            raise CdsError(503, "authentication temporarily unavailable; try again") from exc
        g.iss, g.jti = claims.get("iss"), claims.get("jti")

    for module in (discovery, service_call, feedback, health, openapi, rules_page, chart_pages):
        app.register_blueprint(module.bp)
    if settings.metrics_port is None:  # else the server answers /metrics on its own port, outside this app
        app.register_blueprint(metrics_page.bp)


def unauthorized(why: str | None = None) -> CdsError:
    return CdsError(401, "authentication required" + (f": {why}" if why else ""),
                    headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})
