"""copy-database and compare-database: this database into an empty one on the other engine.

test[sqlite] copies SQLite into PostgreSQL (the migration off SQLite); test[postgresql]
copies PostgreSQL into SQLite (the way back), with the same code and the same checks.
"""

import json
import shutil
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from task_manager import create_app, dbcopy
from task_manager.extensions import db
from task_manager.models import Task
from tests.conftest import PASSWORD, Api, make_config, pg_config
from tests.pgcluster import OWNER


@pytest.fixture
def other_database(engine, tmp_path, request):
    """A factory: a new database on the other engine (migrated to a revision) -> the app's settings."""
    made = []

    def make(revision: str | None = "head") -> dict:
        if engine == "postgresql":  # the other one is SQLite
            path = tmp_path / f"target{len(made)}" / "task_manager.db"
            path.parent.mkdir()
            made.append(path)
            if revision == "head":
                shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
                return {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"}
            config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"}
        else:
            cluster = request.getfixturevalue("pg_cluster")
            name = cluster.create_database(
                template=request.getfixturevalue("pg_template") if revision == "head" else None)
            made.append(name)
            config = pg_config(cluster, name)
        if revision not in ("head", None):
            runner = create_app(make_config(tmp_path, **config)).test_cli_runner()
            assert runner.invoke(args=["migrate", "--to", revision]).exit_code == 0
        return config

    yield make
    if engine == "sqlite":
        for name in made:
            request.getfixturevalue("pg_cluster").drop_database(name)


def _target_url(config: dict) -> str:
    """What an operator passes: the owner's URL on PostgreSQL (it sets the sequences)."""
    return config.get("MIGRATION_DATABASE_URI") or config["SQLALCHEMY_DATABASE_URI"]


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    return result, (json.loads(result.output.strip().splitlines()[-1]) if "--json" in args and result.output else None)


def _seed(app, client):
    alice = Api(client, "alice")
    bob = Api(client, "bob_b")
    alice.task(title="買い物 ☕", description="牛乳\nパン\t卵", priority="high", due_date="2026-03-01")
    done = alice.task(title="done")
    alice.patch(f"/api/tasks/{done['id']}", json={"status": "completed"})
    bob.task(title="bob's", description=None)
    bob.post("/api/auth/logout")  # a revoked token, an ended sign-in
    client.post("/api/auth/login", json={"username": "alice", "password": "wrong-password"})  # a login failure
    with app.app_context():
        # A deleted row leaves a gap: ids are copied, not renumbered.
        gone = Task(user_id=alice.user["id"], title="gone")
        db.session.add(gone)
        db.session.commit()
        db.session.delete(gone)
        db.session.commit()
        db.session.add(Task(user_id=alice.user["id"], title="micro", created_at=datetime(2026, 1, 2, 3, 4, 5, 678901)))
        db.session.commit()
    return alice


def test_copy_then_compare_then_refuse_a_second_copy(app, client, runner, other_database, tmp_path):
    alice = _seed(app, client)
    with app.app_context():
        largest_id = db.session.scalar(text("SELECT max(id) FROM tasks"))
    target = other_database()
    result, report = _run(runner, "copy-database", "--to", _target_url(target), "--json")
    assert result.exit_code == 0, result.output
    assert report["equal"] is True and report["copied"] is True
    assert set(report["tables"]) == {t.name for t in db.metadata.sorted_tables}
    for name, figures in report["tables"].items():
        assert figures["equal"] is True, name
        assert figures["rows_source"] == figures["rows_target"]
        assert figures["checksum_source"] == figures["checksum_target"]
    assert report["tables"]["users"]["rows_target"] == 2
    assert report["tables"]["tasks"]["rows_target"] == 4
    assert report["tables"]["revoked_tokens"]["rows_target"] >= 1
    assert report["tables"]["login_failures"]["rows_target"] >= 1

    # The copy serves: the same accounts (password hashes), tasks and ids, and new rows get new ids.
    copy = create_app(make_config(tmp_path / "copy", **target))
    moved = copy.test_client()
    token = moved.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).get_json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    listed = moved.get("/api/tasks?sort=created_at", headers=headers).get_json()["tasks"]
    original = alice.get("/api/tasks?sort=created_at").get_json()["tasks"]
    assert listed == original
    created = moved.post("/api/tasks", json={"title": "after the move"}, headers=headers)
    assert created.status_code == 201
    assert created.get_json()["id"] == largest_id + 1  # the sequence continues after the largest id copied
    assert moved.post("/api/auth/register", json={"username": "carol", "password": "long-pass-1234"}).status_code == 201

    # Not equal any more: the copy serves and has a task more. Compare says so, and exit 1.
    result, report = _run(runner, "compare-database", "--with", _target_url(target), "--json")
    assert result.exit_code == 1
    assert report["equal"] is False and report["tables"]["tasks"]["equal"] is False
    assert report["tables"]["tasks"]["rows_target"] == report["tables"]["tasks"]["rows_source"] + 1
    assert "copied" not in report

    again = runner.invoke(args=["copy-database", "--to", _target_url(target), "--json"])
    assert again.exit_code == 1
    assert "not empty" in again.output and "nothing is overwritten" in again.output
    with copy.app_context():
        db.engine.dispose()


def test_compare_of_an_untouched_copy_is_equal(app, client, runner, other_database):
    _seed(app, client)
    target = other_database()
    assert runner.invoke(args=["copy-database", "--to", _target_url(target)]).exit_code == 0
    result = runner.invoke(args=["compare-database", "--with", _target_url(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "equal"
    result, report = _run(runner, "compare-database", "--with", _target_url(target), "--json")
    assert result.exit_code == 0 and report["equal"] is True


def test_an_empty_database_copies_and_compares(runner, other_database):
    target = other_database()
    result = runner.invoke(args=["copy-database", "--to", _target_url(target)])
    assert result.exit_code == 0, result.output
    assert "users: 0 -> 0 rows, equal" in result.output and result.output.strip().endswith("copied")


def test_a_target_at_another_revision_is_refused(app, client, runner, other_database):
    _seed(app, client)
    for revision, says in (("0002", "at revision 0002"), (None, "at revision None")):
        target = other_database(revision)
        result = runner.invoke(args=["copy-database", "--to", _target_url(target), "--json"])
        assert result.exit_code == 1
        assert says in result.output and "migrate the target" in result.output
        assert "Traceback" not in result.output


def test_a_source_behind_head_is_refused(runner, other_database):
    assert runner.invoke(args=["migrate", "--to", "0002"]).exit_code == 0
    result = runner.invoke(args=["copy-database", "--to", _target_url(other_database())])
    assert result.exit_code == 1 and "migrate it first" in result.output


def test_an_unreachable_target_is_an_error_without_its_password(runner, tmp_path):
    url = f"postgresql://{OWNER}:s3cret-pw@/task_manager?host={tmp_path / 'nothing-here'}"
    for command in (["copy-database", "--to", url], ["compare-database", "--with", url]):
        result = runner.invoke(args=command)
        assert result.exit_code == 1
        assert "cannot connect to postgresql://tm_owner:***@/task_manager" in result.output
        assert "s3cret-pw" not in result.output
    bad = runner.invoke(args=["copy-database", "--to", "mysql://root:pw@localhost/x"])
    assert bad.exit_code == 1 and "not a sqlite:/// or postgresql:// database URL" in bad.output
    assert "pw@" not in bad.output


def test_the_source_can_be_another_database_than_the_apps(app, client, other_database, tmp_path):
    """Once the settings name the new database: copy-database --from <the old one>."""
    _seed(app, client)
    target = other_database()
    moved = create_app(make_config(tmp_path / "moved", **target)).test_cli_runner()
    source_url = app.config["MIGRATION_DATABASE_URI"] or app.config["SQLALCHEMY_DATABASE_URI"]
    result, report = _run(moved, "copy-database", "--from", source_url, "--to", _target_url(target), "--json")
    assert result.exit_code == 0, result.output
    assert report["copied"] is True and report["tables"]["users"]["rows_target"] == 2
    result, report = _run(moved, "compare-database", "--from", source_url, "--with", _target_url(target), "--json")
    assert result.exit_code == 0 and report["equal"] is True
    bad = moved.invoke(args=["compare-database", "--from", "oracle://x:pw@y/z", "--with", _target_url(target)])
    assert bad.exit_code == 1 and "not a sqlite:/// or postgresql:// database URL" in bad.output


def test_with_from_the_other_side_defaults_to_the_apps_own_database(app, client, other_database, tmp_path):
    """The move to PostgreSQL: the settings name the new database; only the old one is given."""
    _seed(app, client)
    moved = create_app(make_config(tmp_path / "moved", **other_database())).test_cli_runner()
    source_url = app.config["MIGRATION_DATABASE_URI"] or app.config["SQLALCHEMY_DATABASE_URI"]
    result, report = _run(moved, "copy-database", "--from", source_url, "--json")
    assert result.exit_code == 0, result.output
    tasks = report["tables"]["tasks"]
    assert report["copied"] is True and tasks["rows_target"] == tasks["rows_source"] > 0
    result, report = _run(moved, "compare-database", "--from", source_url, "--json")
    assert result.exit_code == 0 and report["equal"] is True


def test_without_from_or_a_target_it_says_what_to_give(runner):
    result = runner.invoke(args=["copy-database"])
    assert result.exit_code == 2 and "give --to" in result.output
    result = runner.invoke(args=["compare-database"])
    assert result.exit_code == 2 and "give --with" in result.output


def test_the_target_can_come_from_the_environment(runner, other_database, monkeypatch):
    monkeypatch.setenv("TASK_MANAGER_TARGET_DATABASE_URL", _target_url(other_database()))
    result = runner.invoke(args=["copy-database", "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.sqlite_only
def test_a_row_postgresql_refuses_rolls_the_whole_copy_back(app, client, runner, other_database):
    """SQLite does not enforce VARCHAR lengths; PostgreSQL does. Nothing is half copied."""
    _seed(app, client)
    with app.app_context():
        db.session.execute(text("UPDATE users SET username = :long WHERE username = 'bob_b'"), {"long": "b" * 80})
        db.session.commit()
    target = other_database()
    result = runner.invoke(args=["copy-database", "--to", _target_url(target)])
    assert result.exit_code == 1
    assert "copy failed, nothing was copied" in result.output and "too long" in result.output
    result, report = _run(runner, "compare-database", "--with", _target_url(target), "--json")
    assert all(figures["rows_target"] == 0 for figures in report["tables"].values())


def test_a_copy_that_compares_different_is_rolled_back(app, client, runner, other_database, monkeypatch):
    _seed(app, client)
    target = other_database()
    real = dbcopy.compare

    def tampered(source, other, tables):
        report = real(source, other, tables)
        report["tables"]["tasks"]["equal"] = report["equal"] = False
        return report

    monkeypatch.setattr(dbcopy, "compare", tampered)
    result, report = _run(runner, "copy-database", "--to", _target_url(target), "--json")
    assert result.exit_code == 1
    assert report["copied"] is False and report["equal"] is False
    monkeypatch.setattr(dbcopy, "compare", real)
    _, report = _run(runner, "compare-database", "--with", _target_url(target), "--json")
    assert all(figures["rows_target"] == 0 for figures in report["tables"].values())
    text_mode = runner.invoke(args=["compare-database", "--with", _target_url(target)])
    assert text_mode.exit_code == 1 and "DIFFERENT" in text_mode.output and "different" in text_mode.output


def test_values_have_one_text_on_every_engine():
    assert dbcopy.canonical(None) is None
    assert dbcopy.canonical(True) is True
    assert dbcopy.canonical(7) == 7
    assert dbcopy.canonical("é") == "é"
    assert dbcopy.canonical(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05.000000"
    assert dbcopy.canonical(datetime(2026, 1, 2, 3, 4, 5, 6)) == "2026-01-02 03:04:05.000006"
    assert dbcopy.canonical(date(2026, 1, 2)) == "2026-01-02"
    assert dbcopy.canonical(b"\x00\xff") == "00ff"
    assert dbcopy.canonical(Decimal("1.50")) == "1.50"
    with pytest.raises(TypeError):
        dbcopy.canonical(object())


def test_the_checksum_is_the_same_on_both_engines(app, other_database, tmp_path):
    """Text keys sort byte-wise on both sides ('B' before 'a'), whatever PostgreSQL's collation."""
    target = other_database()
    other = create_app(make_config(tmp_path / "other", **target))
    rows = [{"jti": jti, "token_type": "access", "user_id": None, "revoked_at": datetime(2026, 1, 1),
             "expires_at": datetime(2026, 1, 2, 0, 0, 0, 5)} for jti in ("a1", "B2", "_3", "é4", "Z5")]
    digests = []
    for each in (app, other):
        with each.app_context():
            table = db.metadata.tables["revoked_tokens"]
            db.session.execute(table.insert(), rows)
            db.session.commit()
            with db.engine.connect() as conn:
                digests.append(dbcopy.table_digest(conn, table))
            db.session.remove()
            db.engine.dispose()
    assert digests[0] == digests[1] and digests[0][0] == 5
