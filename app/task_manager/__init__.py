"""Task-management API: the Flask service that the operations manual runs."""

from __future__ import annotations

from importlib import metadata

from flask import Flask

try:
    __version__ = metadata.version("task-manager")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory (flaskr style): config, extensions, logging, blueprints, commands."""
    # Imported here because the modules read __version__ from this package.
    from . import cli, config, errors, extensions, logging_setup, metrics, requestlog  # noqa: PLC0415
    from .api import auth, health, openapi, tasks  # noqa: PLC0415

    app = Flask(__name__, instance_path=config.instance_path_from_env(), instance_relative_config=True)
    config.load(app, test_config)
    logging_setup.configure(app)
    extensions.init_app(app)
    errors.register(app)
    requestlog.register(app)
    metrics.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(openapi.bp)
    cli.register(app)
    return app
