import json
import subprocess
import sys

import pytest

from task_manager import create_app
from task_manager.config import ConfigError, masked, normalise_url
from tests.conftest import make_config


@pytest.mark.parametrize("secret", [None, "", "dev", "changeme", "too-short"])
def test_production_refuses_missing_or_weak_secret(tmp_path, secret):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(make_config(tmp_path, ENV_NAME="production", SECRET_KEY=secret))


def test_production_starts_with_a_strong_secret(tmp_path):
    app = create_app(make_config(tmp_path, ENV_NAME="production", SECRET_KEY="s" * 48))
    assert app.config["JWT_SECRET_KEY"] == "s" * 48


def test_unknown_environment_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="TASK_MANAGER_ENV"):
        create_app(make_config(tmp_path, ENV_NAME="staging"))


def test_bad_numbers_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="JWT_ACCESS_TOKEN_MINUTES"):
        create_app(make_config(tmp_path, JWT_ACCESS_TOKEN_MINUTES=0))


def _run(env, code, cwd):
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_config_from_environment_and_instance_folder(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.toml").write_text('SECRET_KEY = "from-instance-file-0123456789abcdef"\nTASKS_PER_PAGE = 7\n')
    env = {
        "PATH": "/usr/bin:/bin",
        "TASK_MANAGER_INSTANCE_PATH": str(instance),
        "TASK_MANAGER_TASKS_PER_PAGE": "9",
        "TASK_MANAGER_CORS_ORIGINS": "https://tasks.example.org",
    }
    code = (
        "from task_manager import create_app; a = create_app(); "
        "print(a.config['SECRET_KEY'], a.config['TASKS_PER_PAGE'], a.config['SQLALCHEMY_DATABASE_URI'], "
        "a.config['LOG_DIR'], a.config['CORS_ORIGINS'])"
    )
    result = _run(env, code, tmp_path)
    assert result.returncode == 0, result.stderr
    secret, per_page, uri, log_dir, origins = result.stdout.split(" ", 4)
    assert secret == "from-instance-file-0123456789abcdef"
    assert per_page == "9"  # the environment wins over the file
    assert uri == f"sqlite:///{instance}/task_manager.db"
    assert log_dir == str(tmp_path / "logs")
    assert "https://tasks.example.org" in origins


def test_the_instance_folder_holds_data_and_its_code_is_never_run(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    ran = tmp_path / "ran"
    (instance / "config.py").write_text(f'open({str(ran)!r}, "w").close()\nSECRET_KEY = "x" * 40\n')
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_INSTANCE_PATH": str(instance), "TASK_MANAGER_ENV": "development"}
    result = _run(env, "from task_manager import create_app; create_app()", tmp_path)
    assert result.returncode != 0 and not ran.exists()
    assert f"{instance / 'config.py'} is no longer read" in result.stderr
    assert f"{instance / 'config.toml'}" in result.stderr
    (instance / "config.py").unlink()
    (instance / "config.toml").write_text('TASKS_PER_PAGE = "seven\n')
    result = _run(env, "from task_manager import create_app; create_app()", tmp_path)
    assert result.returncode != 0 and "config.toml is not valid TOML" in result.stderr


def test_database_url_is_honoured(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_ENV": "development",
           "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / "i"), "DATABASE_URL": "sqlite:////tmp/elsewhere.db"}
    result = _run(env, "from task_manager import create_app; print(create_app().config['SQLALCHEMY_DATABASE_URI'])",
                  tmp_path)
    assert result.stdout.strip() == "sqlite:////tmp/elsewhere.db", result.stderr


def test_production_without_secret_fails_to_start_from_the_environment(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / "i")}
    result = _run(env, "from task_manager import create_app; create_app()", tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is missing" in result.stderr


def test_cors_allows_only_configured_origins(tmp_path):
    app = create_app(make_config(tmp_path, CORS_ORIGINS=["http://localhost:8080"]))
    client = app.test_client()
    allowed = client.options("/api/tasks", headers={"Origin": "http://localhost:8080",
                                                    "Access-Control-Request-Method": "GET"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "http://localhost:8080"
    denied = client.options("/api/tasks", headers={"Origin": "http://evil.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_development_defaults_allow_the_frontend_origin(tmp_path):
    app = create_app(make_config(tmp_path, ENV_NAME="development"))
    assert "http://localhost:8080" in app.config["CORS_ORIGINS"]


# ---- The database settings ----


def test_postgresql_urls_from_the_environment_mean_psycopg(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TASK_MANAGER_ENV": "development",
           "TASK_MANAGER_INSTANCE_PATH": str(tmp_path / "i"),
           "DATABASE_URL": "postgresql://app:p%40ss@db.example:5432/task_manager?sslmode=require",
           "MIGRATION_DATABASE_URL": "postgres://owner:secret@db.example/task_manager",
           "TASK_MANAGER_DATABASE_POOL_SIZE": "8", "TASK_MANAGER_DATABASE_POOL_OVERFLOW": "0",
           "TASK_MANAGER_DATABASE_POOL_TIMEOUT_SECONDS": "3", "TASK_MANAGER_DATABASE_CONNECT_TIMEOUT_SECONDS": "2"}
    code = ("import json; from task_manager import create_app; c = create_app().config; print(json.dumps("
            "[c['SQLALCHEMY_DATABASE_URI'], c['MIGRATION_DATABASE_URI'], c['SQLALCHEMY_ENGINE_OPTIONS']]))")
    result = _run(env, code, tmp_path)
    assert result.returncode == 0, result.stderr
    uri, migration_uri, options = json.loads(result.stdout)
    assert uri == "postgresql+psycopg://app:p%40ss@db.example:5432/task_manager?sslmode=require"
    assert migration_uri == "postgresql+psycopg://owner:secret@db.example/task_manager"
    assert options == {"pool_size": 8, "max_overflow": 0, "pool_timeout": 3, "pool_pre_ping": True,
                       "pool_recycle": 1800, "connect_args": {"connect_timeout": 2, "application_name": "task-manager"}}


def test_sqlite_has_no_migration_url_and_no_pool_options(tmp_path):
    app = create_app(make_config(tmp_path))
    assert app.config["MIGRATION_DATABASE_URI"] is None
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {}


PG = "postgresql://app:pw@db/task_manager"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"DATABASE_POOL_SIZE": 0}, "DATABASE_POOL_SIZE must be a whole number above 0"),
    ({"DATABASE_POOL_SIZE": 2.5}, "DATABASE_POOL_SIZE"),
    ({"DATABASE_POOL_SIZE": True}, "DATABASE_POOL_SIZE"),
    ({"DATABASE_POOL_OVERFLOW": -1}, "DATABASE_POOL_OVERFLOW must be a whole number, 0 or more"),
    ({"DATABASE_POOL_TIMEOUT_SECONDS": "10"}, "DATABASE_POOL_TIMEOUT_SECONDS"),
    ({"DATABASE_CONNECT_TIMEOUT_SECONDS": 0}, "DATABASE_CONNECT_TIMEOUT_SECONDS"),
    ({"SQLALCHEMY_DATABASE_URI": "mysql://root:pw@db/x"}, "DATABASE_URL must be sqlite:///<file> or postgresql://"),
    ({"SQLALCHEMY_DATABASE_URI": "not a url"}, "DATABASE_URL is not a database URL"),
    ({"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://app:pw@db/x"}, "the PostgreSQL driver is psycopg"),
    ({"MIGRATION_DATABASE_URI": "postgresql://owner:pw@db/task_manager"}, "MIGRATION_DATABASE_URL is for PostgreSQL"),
    ({"SQLALCHEMY_DATABASE_URI": PG, "MIGRATION_DATABASE_URI": "sqlite:////tmp/x.db"}, "for PostgreSQL only"),
    ({"SQLALCHEMY_DATABASE_URI": PG, "MIGRATION_DATABASE_URI": "postgresql://owner:pw@db/other"},
     "names database 'other', DATABASE_URL 'task_manager'"),
])
def test_bad_database_settings_are_refused_without_the_password(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as refused:
        create_app(make_config(tmp_path, **overrides))
    assert ":pw@" not in str(refused.value)


def test_postgresql_settings_make_no_connection_and_take_a_zero_overflow(tmp_path):
    app = create_app(make_config(tmp_path, SQLALCHEMY_DATABASE_URI=PG, DATABASE_POOL_OVERFLOW=0))
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://app:pw@db/task_manager"
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["max_overflow"] == 0


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://app:s3cret@db:5432/tm?sslmode=require", "postgresql+psycopg://app:***@db:5432/tm?sslmode=require"),
    ("postgresql://app@/tm?host=/run/pg&password=s3cret", "postgresql://app@/tm?host=%2Frun%2Fpg&password=%2A%2A%2A"),
    ("sqlite:////srv/task_manager.db", "sqlite:////srv/task_manager.db"),
    ("::s3cret::", "<unparsable database URL>"),
    (None, "None"),
])
def test_urls_are_shown_without_their_password(url, shown):
    assert masked(url) == shown
    assert "s3cret" not in masked(url)


def test_urls_are_normalised_to_psycopg():
    assert normalise_url("postgresql://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_url("postgresql+psycopg://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert normalise_url(None) is None
