"""A throwaway PostgreSQL cluster for the tests, from Debian's postgresql package.

initdb and pg_ctl of /usr/lib/postgresql/15/bin make it in a temporary directory; it
listens on a unix socket in that directory only (no TCP port), trusts its local callers,
and is removed at the end of the session. PostgreSQL refuses to run as root, so under
root the server's own commands run as the package's postgres user, which owns the
directory. Durability is off (fsync, full-page writes): nothing here outlives the run.

Two roles, as in production: the schema owner, which runs the migrations, and the API's
role, which may only read and write rows (ALTER DEFAULT PRIVILEGES gives it each table
the owner creates).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("TASK_MANAGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = (
    f"the app tests need PostgreSQL 15 ({PG_BIN}/initdb and pg_ctl): "
    "apt-get install postgresql (as scripts/install-system-deps.sh does)"
)
OWNER = "tm_owner"
API = "tm_api"
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    # The tests decide when tables are vacuumed (optimize), not a background worker.
    "autovacuum": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}
# What the deploy grants the API's role: rows, never the schema (PostgreSQL 15 gives
# PUBLIC no CREATE on schema public any more; the revoke says so for older ones too).
API_GRANTS = (
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    f"GRANT USAGE ON SCHEMA public TO {API}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public "
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {API}",
    f"ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {API}",
)


# What a test may change in its database and the next one must not see: tables, columns,
# constraints, indexes, grants, default privileges, the schema revision. Rows are emptied
# anyway (TRUNCATE); a database whose fingerprint moved is replaced by a fresh copy.
FINGERPRINT = """
    SELECT md5(string_agg(item, ',' ORDER BY item)) FROM (
        SELECT 'rel:' || relname || ':' || relkind::text || ':' || coalesce(relacl::text, '') || ':'
               || pg_get_userbyid(relowner)::text AS item
        FROM pg_class WHERE relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'con:' || conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'col:' || attrelid::regclass::text || '.' || attname || ':' || format_type(atttypid, atttypmod)
               || ':' || attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'nsp:' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'public'
        UNION ALL
        SELECT 'acl:' || defaclacl::text FROM pg_default_acl
        UNION ALL
        SELECT 'rev:' || version_num FROM alembic_version
    ) items
"""


class ClusterError(RuntimeError):
    pass


class Cluster:
    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (PG_BIN / tool).exists():
                raise ClusterError(INSTALL_HINT)
        self.base = Path(tempfile.mkdtemp(prefix="task-manager-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log = self.base / "postgres.log"
        self._names = itertools.count(1)
        self._account = None
        if os.geteuid() == 0:
            try:
                self._account = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterError(f"no postgres user to run the server as: {INSTALL_HINT}") from None
        self.socket_dir.mkdir()
        if self._account is not None:
            for path in (self.base, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _run(self, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self._account is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.base)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise ClusterError(f"{' '.join(argv[:2])} failed: {result.stdout}{result.stderr}{log}")
        return result

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions")
        settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.socket_dir}'"}
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str, role: str = "postgres") -> str:
        return f"postgresql://{role}@/{database}?host={self.socket_dir}"

    def sql(self, *statements: str, database: str = "postgres", role: str = "postgres", params=None) -> list:
        """Run statements in autocommit as role (the superuser by default); the last one's rows."""
        rows: list = []
        with psycopg.connect(host=str(self.socket_dir), dbname=database, user=role, autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement, params)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def setup_roles(self) -> None:
        self.sql(f"CREATE ROLE {OWNER} LOGIN", f"CREATE ROLE {API} LOGIN")

    def create_database(self, template: str | None = None, prefix: str = "tm") -> str:
        """A new database owned by the schema owner, with the API role's default grants (or a
        copy of template, grants and all)."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        if template:
            self.sql(f"CREATE DATABASE {name} TEMPLATE {template} OWNER {OWNER}")
        else:
            self.sql(f"CREATE DATABASE {name} OWNER {OWNER}")
            self.sql(*API_GRANTS, database=name)
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def fingerprint(self, database: str) -> str | None:
        try:
            return self.sql(FINGERPRINT, database=database)[0][0]
        except psycopg.errors.UndefinedTable:  # alembic_version is gone: migrated down to base
            return None

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


class Recycled:
    """One migrated database that test after test gets back as new: emptied and its ids
    restarted (TRUNCATE ... RESTART IDENTITY), far cheaper than a CREATE DATABASE per test.
    When a test changed its schema or grants, it is replaced by a new copy of the template."""

    def __init__(self, cluster: Cluster, template: str) -> None:
        self.cluster = cluster
        self.template = template
        self.expected = cluster.fingerprint(template)
        self.name = cluster.create_database(template=template, prefix="tm_recycled")

    def fresh(self) -> str:
        # The last test's pools may still hold connections: end them, or TRUNCATE would wait.
        self.cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", params=(self.name,))
        if self.cluster.fingerprint(self.name) != self.expected:
            self.cluster.drop_database(self.name)
            self.name = self.cluster.create_database(template=self.template, prefix="tm_recycled")
            return self.name
        tables = [row[0] for row in self.cluster.sql(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'", database=self.name)]
        self.cluster.sql("SET lock_timeout = '20s'",
                         f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE", database=self.name)
        return self.name
