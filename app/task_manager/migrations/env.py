"""Alembic environment for Flask-Migrate (batch mode, so SQLite can alter tables).

On PostgreSQL the API's role may not change the schema: migrations connect with
MIGRATION_DATABASE_URI (the schema owner) when it is set, else with the app's URL.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text

from task_manager import task_bytes, task_counts
from task_manager.extensions import MIGRATION_LOCK, migration_engine

config = context.config
if config.config_file_name is not None:
    # Keep the app's own loggers (logs/*.log) alive when migrations run in-process.
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


def run_migrations_offline():
    url = current_app.config.get("MIGRATION_DATABASE_URI") or current_app.config["SQLALCHEMY_DATABASE_URI"]
    context.configure(url=url, target_metadata=target_db.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def skip_empty_autogenerate(_context, _revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with migration_engine() as engine, engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            # Several app hosts may share one PostgreSQL and migrate it at once (a deploy on each):
            # the first takes the lock for its transaction, the others wait, then find it at head.
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
            # A migration that rebuilt `tasks` (SQLite's batch mode) took its triggers along.
            for kept, what in ((task_counts, "task counts"), (task_bytes, "task bytes")):
                missing = kept.ensure(connection)
                if missing:
                    logger.info("Triggers %s made again and the %s filled again.", ", ".join(missing), what)
        # SQLite's migrations run in a transaction each (no transactional DDL): the step above
        # ran in one of its own, begun by SQLAlchemy, which only a commit keeps.
        if connection.in_transaction():
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
