import subprocess
import sys

import pytest

from task_manager import create_app
from task_manager.config import ConfigError
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
    (instance / "config.py").write_text('SECRET_KEY = "from-instance-file-0123456789abcdef"\nTASKS_PER_PAGE = 7\n')
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
