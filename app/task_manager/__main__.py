"""The `task-manager` command (and `python -m task_manager`): the operator's commands on
the app the factory makes. Its own module, so that the commands (cli.py) and the package
never import each other."""

from __future__ import annotations

import click
from flask.cli import FlaskGroup

from . import create_app


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=True, load_dotenv=False)
def main():
    """task-manager: the operator's commands (same as `flask --app task_manager ...`)."""


if __name__ == "__main__":
    main()
