"""HTTP edge: blueprints, CORS and the error handler, registered on an app by create_app."""

from flask import Flask

from cds.api import cors, discovery, errors, feedback, health, service_call
from cds.settings import Settings


def register(app: Flask, settings: Settings) -> None:
    cors.register(app, settings.cors_origins)
    errors.register(app)
    for module in (discovery, service_call, feedback, health):
        app.register_blueprint(module.bp)
