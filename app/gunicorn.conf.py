"""`gunicorn task_manager.wsgi:app` from app/ picks this up; the settings live in the package."""

from task_manager.gunicorn_conf import *  # noqa: F403
