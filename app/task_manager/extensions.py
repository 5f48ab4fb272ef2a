"""Flask extensions, created unbound and bound in the factory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g, has_app_context
from flask.sessions import SessionInterface
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from .config import APPLICATION_NAME, engine_of
from .proxy import ProxiedClient
from .verified_tokens import RememberingJWTManager

# Named constraints, so that Alembic's batch mode can drop and recreate them on SQLite, and
# so that every constraint and index has the same name on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Where a request keeps its own connection (Database.request_connection), in flask.g.
_REQUEST_CONNECTION = "_task_manager_connection"


class Database(SQLAlchemy):
    """Flask-SQLAlchemy, with a connection of the request's own for the API's plain statements,
    and an end-of-request cleanup that survives a database that went away."""

    def request_connection(self) -> Connection:
        """The request's own Core connection, for the statements the API runs most (the token's
        state, a list, a task's read and write): run there, below the ORM's session, they skip
        the session's making, joining and closing, which cost a list more than its statements.
        A write on it is committed at once by its caller, so between statements it holds reads
        at most; and it is given back before the session takes a connection (RequestSession),
        so that a request never holds two connections of a small pool."""
        connection = g.get(_REQUEST_CONNECTION)
        if connection is None:
            connection = self.engine.connect()
            setattr(g, _REQUEST_CONNECTION, connection)
        return connection

    def release_request_connection(self) -> None:
        """Give the request's connection back to the pool (its open reads rolled back)."""
        connection = g.pop(_REQUEST_CONNECTION, None)
        if connection is None:
            return

        def discard() -> None:
            if not connection.closed:  # a failed close may have ended it already
                connection.invalidate()
                connection.close()

        self._survive_a_closed_connection(connection.close, discard)

    def _teardown_session(self, exc: BaseException | None) -> None:
        def discard() -> None:
            self.session.registry().invalidate()
            self.session.registry.clear()

        try:
            self.release_request_connection()
        finally:  # the session's connection goes back too, whatever the first did
            self._survive_a_closed_connection(lambda: super(Database, self)._teardown_session(exc), discard)

    @staticmethod
    def _survive_a_closed_connection(end, discard) -> None:
        # The response is made by now. When PostgreSQL restarts between the last statement
        # and this ROLLBACK, the rollback fails on a dead connection: that must not turn the
        # answer into a 500. The connection is discarded instead (the pool opens a new one).
        try:
            end()
        except DBAPIError as error:
            if not error.connection_invalidated and not isinstance(error, OperationalError | InterfaceError):
                raise
            current_app.logger.warning("Discarded a connection the database closed: %s",
                                       " ".join(str(getattr(error, "orig", None) or error).split()))
            discard()


class RequestSession(Session):
    """The ORM's session, which first gives back the request's own connection, if it holds one,
    so that one connection serves the request at a time."""

    def get_bind(self, *args, **kwargs):
        if has_app_context() and _REQUEST_CONNECTION in g:
            self._db.release_request_connection()
        return super().get_bind(*args, **kwargs)


class NoCookieSessions(SessionInterface):
    """The API signs people in with bearer tokens and keeps no cookie session: Flask's
    default would still build a signed-cookie serializer for every request to find none."""

    def open_session(self, app, request):
        return None  # Flask gives the request its empty, read-only null session

    def save_session(self, app, session, response):
        pass  # pragma: no cover - Flask never saves a null session


db = Database(metadata=MetaData(naming_convention=NAMING_CONVENTION), session_options={"class_": RequestSession})
migrate = Migrate()
jwt = RememberingJWTManager()
MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
# The PostgreSQL advisory lock a migration holds for its transaction (migrations/env.py).
MIGRATION_LOCK = 0x7461736B  # "task"


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection, _record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: the WAL switch itself may wait for another writer.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return on_connect


def engine_name(app: Flask | None = None) -> str:
    """'sqlite' or 'postgresql': the engine of the app's database."""
    return engine_of((app or current_app).config["SQLALCHEMY_DATABASE_URI"])


@contextmanager
def migration_engine() -> Iterator[Engine]:
    """The engine that changes the schema: MIGRATION_DATABASE_URI's (the schema owner, on
    PostgreSQL), for this one job and closed after it; else the app's own."""
    url = current_app.config.get("MIGRATION_DATABASE_URI")
    if not url:
        yield db.engine
        return
    engine = create_engine(url, poolclass=NullPool, connect_args={
        "connect_timeout": current_app.config["DATABASE_CONNECT_TIMEOUT_SECONDS"],
        "application_name": f"{APPLICATION_NAME}-migrate",
    })
    try:
        yield engine
    finally:
        engine.dispose()


def init_app(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Fork safety: this makes the engine and its (empty) pool; nothing here, nor anywhere
    # in create_app(), opens a connection. gunicorn runs without preload_app (see
    # gunicorn_conf.py), and even with it no socket would be shared by the workers: each
    # opens its own connections at its first request (tests/test_pool.py proves it).
    db.init_app(app)
    if engine_name(app) == "sqlite":
        with app.app_context():
            # Flask-SQLAlchemy makes engines per app, so each gets its listener once.
            for engine in db.engines.values():
                event.listen(engine, "connect", _sqlite_pragmas(app.config["SQLITE_BUSY_TIMEOUT_MS"]))
    app.session_interface = NoCookieSessions()
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True, compare_type=True)
    jwt.init_app(app)

    if app.config["CORS_ORIGINS"]:
        CORS(
            app,
            resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}, r"/health": {"origins": "*"}},
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    # Always installed: it also tells proxied (public) callers from direct ones on the host.
    app.wsgi_app = ProxiedClient(app.wsgi_app, app.config["TRUSTED_PROXIES"])
