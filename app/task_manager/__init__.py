"""Task-management API: the Flask service that the operations manual runs."""

from __future__ import annotations

from flask import Flask

from .release import __version__

__all__ = ["__version__", "create_app"]


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory (flaskr style): config, extensions, logging, blueprints, commands."""
    # Imported here: the package itself stays light to import (its version, the factory).
    # The JWT callbacks: tokens.py declares them on extensions' JWTManager as it is imported.
    from . import (  # noqa: PLC0415
        cli,
        config,
        errors,
        extensions,
        logging_setup,
        metrics,
        requestlog,
        tokens,  # noqa: F401
    )
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
