"""Configuration: defaults, then the instance folder's config.toml, then the environment.

Later sources win, so an operator can always override a file with an environment
variable (systemd's EnvironmentFile) without editing anything the release ships.
The instance folder's file is data (TOML), never code: the service may write that
folder, and root's `task-manager` command loads the same settings.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "TASK_MANAGER"
ENVIRONMENTS = ("production", "development", "testing")

# Secrets that must never run in production: the empty string, placeholders
# people copy from examples, and the development default below.
DEV_SECRET = "dev-insecure-secret-key-change-me-000000"  # noqa: S105  (refused in production)
KNOWN_BAD_SECRETS = {"", "dev", "secret", "changeme", "change-me", "CHANGE_ME", DEV_SECRET}
MIN_SECRET_LENGTH = 32


POSITIVE_NUMBERS = (
    "JWT_ACCESS_TOKEN_MINUTES", "JWT_REFRESH_TOKEN_DAYS", "TASKS_MAX_PER_PAGE", "TASKS_MAX_PER_USER",
    "LOGIN_FAILURE_WINDOW_SECONDS", "LOGIN_BACKOFF_BASE_SECONDS", "LOGIN_BACKOFF_MAX_SECONDS",
    "REGISTER_MAX_PER_CLIENT", "REGISTER_MAX_PER_NETWORK", "REGISTER_WINDOW_SECONDS", "LOGIN_DEVICE_DAYS",
    "DATABASE_LIMIT_MB",
)
# The PostgreSQL connection pool (per gunicorn worker), and the storage quota's terms: whole numbers above 0.
POSITIVE_INTEGERS = ("DATABASE_POOL_SIZE", "DATABASE_POOL_TIMEOUT_SECONDS", "DATABASE_CONNECT_TIMEOUT_SECONDS",
                     "STORAGE_QUOTA_BYTES", "STORAGE_EXPECTED_USERS", "TASK_WRITES_PER_MINUTE")
# What a task's row, its indexes and the WAL take on disk, as a multiple of its text.
STORAGE_OVERHEAD = 4
ENGINES = ("sqlite", "postgresql")
# The driver for postgresql:// URLs: psycopg 3 (pure Python, on the host's libpq5).
PG_DRIVER = "postgresql+psycopg"
APPLICATION_NAME = "task-manager"  # what pg_stat_activity shows for the API's connections
POOL_RECYCLE_SECONDS = 1800


class ConfigError(RuntimeError):
    """The configuration is unsafe or inconsistent; the app refuses to start."""


def instance_path_from_env() -> str | None:
    value = os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH")
    return os.path.abspath(value) if value else None


def defaults() -> dict:
    return {
        "ENV_NAME": "production",
        "SECRET_KEY": None,
        "JWT_SECRET_KEY": None,
        "JWT_ACCESS_TOKEN_MINUTES": 15,
        "JWT_REFRESH_TOKEN_DAYS": 7,
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "LOG_DIR": None,
        "LOG_LEVEL": "INFO",
        "CORS_ORIGINS": [],
        # X-Forwarded-For hops to trust (nginx: 1). Applied only to requests that arrive on
        # the proxy's unix socket, never to TCP callers (see proxy.py).
        "TRUSTED_PROXIES": 0,
        # GET /metrics and the request counters (metrics.py); off: neither, nothing counted
        # (the benchmark of their cost runs the API both ways).
        "METRICS_ENABLED": True,
        "TASKS_PER_PAGE": 20,
        "TASKS_MAX_PER_PAGE": 100,
        # A ceiling on one account's tasks, so one account cannot fill the disk. Far above
        # what a person keeps (the benchmarks seed 100,000 tasks by SQL, never through the API).
        "TASKS_MAX_PER_USER": 100_000,
        # The text one account's tasks may hold (titles and descriptions, UTF-8 bytes), so one
        # account cannot fill the disk. Unset: the manual's database limit shared by the users
        # the deployment expects, each task's row, indexes and WAL taking about STORAGE_OVERHEAD
        # times its text: 100 MB / (50 x 4) = 512 KiB, some 3,000 tasks of ordinary length.
        "STORAGE_QUOTA_BYTES": None,
        "DATABASE_LIMIT_MB": 100,
        "STORAGE_EXPECTED_USERS": 50,
        # Task writes (create, edit, delete) one account may make in a minute: 20 a second,
        # far past a person at a keyboard, a bound on a script churning the database.
        "TASK_WRITES_PER_MINUTE": 1200,
        # Failed logins slow down instead of locking: after the free failures, each further
        # failure doubles the wait before the next try (base, 2 x base, 4 x base ... up to the
        # cap). Counted per (account, client), so someone else's guesses never hold up the
        # owner's other devices, and per client across accounts, against password spraying;
        # the per-client allowance is larger because offices share one address. A success
        # clears its (account, client) pair. Failures are forgotten after the window; it is
        # far longer than the cap, or the waits would reset while an attacker keeps going.
        "LOGIN_FAILURE_WINDOW_SECONDS": 24 * 3600,
        "LOGIN_FREE_FAILURES_PER_ACCOUNT": 5,
        "LOGIN_FREE_FAILURES_PER_CLIENT": 50,
        # Failures at one account from every client without a device token (guessing one
        # account from many addresses): a delay past these, never a lock (devices.py).
        "LOGIN_FREE_FAILURES_ACROSS_CLIENTS": 20,
        # How long a device token keeps a browser that signed in trusted (throttle.py).
        "LOGIN_DEVICE_DAYS": 180,
        "LOGIN_BACKOFF_BASE_SECONDS": 2,
        "LOGIN_BACKOFF_MAX_SECONDS": 15 * 60,
        # Registrations per client address inside the window (each costs a scrypt hash).
        "REGISTER_MAX_PER_CLIENT": 20,
        # ...and per IPv6 /48 (a site's allocation: 65,536 /64s), inside the same window.
        "REGISTER_MAX_PER_NETWORK": 60,
        "REGISTER_WINDOW_SECONDS": 3600,
        "SQLITE_BUSY_TIMEOUT_MS": 5000,
        "RELEASE_INFO_FILE": None,
        "SQLALCHEMY_DATABASE_URI": None,
        # PostgreSQL only: the schema owner's URL for migrations and maintenance (optimize),
        # when the API's own role may not change the schema. Unset: the API's URL.
        "MIGRATION_DATABASE_URI": None,
        # PostgreSQL only: connections each gunicorn worker keeps (size) and may open beyond
        # them at a peak (overflow, closed again when returned); how long a request waits
        # for a free one, and for the server to answer a new connection, before it gets 503.
        "DATABASE_POOL_SIZE": 4,
        "DATABASE_POOL_OVERFLOW": 2,
        "DATABASE_POOL_TIMEOUT_SECONDS": 10,
        "DATABASE_CONNECT_TIMEOUT_SECONDS": 5,
    }


def normalise_url(url: str | None) -> str | None:
    """postgresql:// (and postgres://) mean psycopg 3: the one PostgreSQL driver installed."""
    if not url:
        return url
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return f"{PG_DRIVER}://{url.removeprefix(scheme)}"
    return url


def masked(url: str | None) -> str:
    """A URL fit for a log or a message: the password, if any, replaced by ***."""
    if not url:
        return str(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable database URL>"
    if "password" in parsed.query:  # libpq also takes it as ?password=
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def engine_of(url: str) -> str:
    """'sqlite', 'postgresql', or the unsupported backend's name."""
    return make_url(url).get_backend_name()


def engine_options(cfg) -> dict:
    """SQLAlchemy create_engine() options for the configured database."""
    if engine_of(cfg["SQLALCHEMY_DATABASE_URI"]) != "postgresql":
        # SQLite: a file per host; the pragmas come from an event listener (extensions.py).
        # No pre-ping: a connection to a local file has no server or network to lose, and a
        # "SELECT 1" before every request would test nothing that can fail.
        return {}
    return {
        "pool_size": cfg["DATABASE_POOL_SIZE"],
        "max_overflow": cfg["DATABASE_POOL_OVERFLOW"],
        "pool_timeout": cfg["DATABASE_POOL_TIMEOUT_SECONDS"],
        # A pooled connection is tested before use, so a PostgreSQL restart (or a network cut,
        # a failover) needs no API restart: a dead connection is replaced, not handed out.
        "pool_pre_ping": True,
        # Idle connections are renewed now and then, before a firewall or proxy drops them.
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "connect_args": {
            "connect_timeout": cfg["DATABASE_CONNECT_TIMEOUT_SECONDS"],
            "application_name": APPLICATION_NAME,
        },
    }


def load(app: Flask, test_config: dict | None) -> None:
    app.config.from_mapping(defaults())
    if test_config is None:
        _refuse_code_settings(app)
        try:
            app.config.from_file(SETTINGS_FILE, load=tomllib.load, silent=True, text=False)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{Path(app.instance_path) / SETTINGS_FILE} is not valid TOML: {exc}") from None
        app.config.from_prefixed_env(ENV_PREFIX)
        # The manual and twelve-factor tooling both speak of DATABASE_URL unprefixed.
        if os.environ.get("DATABASE_URL"):
            app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
        if os.environ.get("MIGRATION_DATABASE_URL"):
            app.config["MIGRATION_DATABASE_URI"] = os.environ["MIGRATION_DATABASE_URL"]
        if os.environ.get(f"{ENV_PREFIX}_ENV"):
            app.config["ENV_NAME"] = os.environ[f"{ENV_PREFIX}_ENV"]
    else:
        app.config.from_mapping(test_config)
    _derive(app)
    _validate(app)
    # Only now: the options read the URL and the pool settings checked above.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)


SETTINGS_FILE = "config.toml"


def _refuse_code_settings(app: Flask) -> None:
    """An instance folder's config.py was once executed: it is refused, never run, so that
    nobody's settings are quietly dropped either."""
    legacy = Path(app.instance_path) / "config.py"
    if legacy.exists():
        raise ConfigError(
            f"{legacy} is no longer read: settings are data now. Write them as KEY = value lines "
            f"(TOML) in {legacy.with_name(SETTINGS_FILE)} or as {ENV_PREFIX}_<KEY> variables, then remove {legacy}"
        )


def _derive(app: Flask) -> None:
    cfg = app.config
    if cfg["ENV_NAME"] != "production" and not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = DEV_SECRET
    if not cfg["JWT_SECRET_KEY"]:
        cfg["JWT_SECRET_KEY"] = cfg["SECRET_KEY"]
    if not cfg["SQLALCHEMY_DATABASE_URI"]:
        db_path = Path(app.instance_path) / "task_manager.db"
        cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db_path}"
    cfg["SQLALCHEMY_DATABASE_URI"] = normalise_url(cfg["SQLALCHEMY_DATABASE_URI"])
    cfg["MIGRATION_DATABASE_URI"] = normalise_url(cfg["MIGRATION_DATABASE_URI"]) or None
    if not cfg["LOG_DIR"]:
        # Beside the instance folder, as in the manual: instance/ and logs/ side by side.
        cfg["LOG_DIR"] = str(Path(app.instance_path).parent / "logs")
    if isinstance(cfg["CORS_ORIGINS"], str):
        cfg["CORS_ORIGINS"] = [o.strip() for o in cfg["CORS_ORIGINS"].split(",") if o.strip()]
    if cfg["ENV_NAME"] == "development" and not cfg["CORS_ORIGINS"]:
        cfg["CORS_ORIGINS"] = ["http://localhost:8080", "http://127.0.0.1:8080"]
    users, limit_mb = cfg["STORAGE_EXPECTED_USERS"], cfg["DATABASE_LIMIT_MB"]
    if cfg["STORAGE_QUOTA_BYTES"] is None and _whole(users) and users > 0 and _number(limit_mb) and limit_mb > 0:
        cfg["STORAGE_QUOTA_BYTES"] = int(limit_mb * 1024 * 1024 / (users * STORAGE_OVERHEAD))
    cfg["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=float(cfg["JWT_ACCESS_TOKEN_MINUTES"]))
    cfg["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(days=float(cfg["JWT_REFRESH_TOKEN_DAYS"]))
    app.json.ensure_ascii = False
    app.json.sort_keys = False


def _validate(app: Flask) -> None:
    cfg = app.config
    if not isinstance(cfg["METRICS_ENABLED"], bool):
        raise ConfigError(f"{ENV_PREFIX}_METRICS_ENABLED must be true or false, not {cfg['METRICS_ENABLED']!r}")
    if cfg["ENV_NAME"] not in ENVIRONMENTS:
        raise ConfigError(f"{ENV_PREFIX}_ENV must be one of {', '.join(ENVIRONMENTS)}, not {cfg['ENV_NAME']!r}")
    if cfg["ENV_NAME"] == "production":
        for key in ("SECRET_KEY", "JWT_SECRET_KEY"):
            value = cfg[key] or ""
            if value in KNOWN_BAD_SECRETS or len(value) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"{key} is missing, a known default, or shorter than {MIN_SECRET_LENGTH} characters: "
                    f"set it in {app.instance_path}/{SETTINGS_FILE} or as {ENV_PREFIX}_{key} "
                    "(the deploy playbook generates one on the host)"
                )
    for key in POSITIVE_NUMBERS:
        if not isinstance(cfg[key], int | float) or isinstance(cfg[key], bool) or cfg[key] <= 0:
            raise ConfigError(f"{key} must be a positive number, not {cfg[key]!r}")
    for key in POSITIVE_INTEGERS:
        if not _whole(cfg[key]) or cfg[key] <= 0:
            raise ConfigError(f"{key} must be a whole number above 0, not {cfg[key]!r}")
    for key in ("TRUSTED_PROXIES", "LOGIN_FREE_FAILURES_PER_ACCOUNT", "LOGIN_FREE_FAILURES_PER_CLIENT",
                "LOGIN_FREE_FAILURES_ACROSS_CLIENTS", "DATABASE_POOL_OVERFLOW"):
        if not _whole(cfg[key]) or cfg[key] < 0:
            raise ConfigError(f"{key} must be a whole number, 0 or more, not {cfg[key]!r}")
    _validate_database(cfg)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_database(cfg) -> None:
    """Both URLs parse, name a supported engine, and the migration URL names the same database."""
    engines = {}
    for key, env in (("SQLALCHEMY_DATABASE_URI", "DATABASE_URL"), ("MIGRATION_DATABASE_URI", "MIGRATION_DATABASE_URL")):
        if cfg[key] is None:
            continue
        try:
            url = make_url(cfg[key])
        except ArgumentError:
            raise ConfigError(f"{env} is not a database URL: {masked(cfg[key])}") from None
        if url.get_backend_name() not in ENGINES:
            raise ConfigError(
                f"{env} must be sqlite:///<file> or postgresql://<role>@<host>/<database>, not {masked(cfg[key])}"
            )
        if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
            raise ConfigError(f"{env}: the PostgreSQL driver is psycopg (postgresql://...), not {url.drivername}")
        engines[key] = url
    migration = engines.get("MIGRATION_DATABASE_URI")
    if migration is not None:
        main = engines["SQLALCHEMY_DATABASE_URI"]
        if main.get_backend_name() != "postgresql" or migration.get_backend_name() != "postgresql":
            raise ConfigError("MIGRATION_DATABASE_URL is for PostgreSQL only (DATABASE_URL and it both postgresql://)")
        if migration.database != main.database:
            raise ConfigError(
                f"MIGRATION_DATABASE_URL names database {migration.database!r}, DATABASE_URL {main.database!r}: "
                "both must be the same database"
            )
