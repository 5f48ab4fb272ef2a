from datetime import timedelta

import pytest
from flask import g
from flask_jwt_extended import create_access_token, create_refresh_token

from task_manager import create_app, tokens
from task_manager.errors import ApiError
from task_manager.extensions import db
from task_manager.models import User
from tests.conftest import PASSWORD, make_config


def register(client, username="alice", password=PASSWORD):
    return client.post("/api/auth/register", json={"username": username, "password": password})


def login(client, username="alice", password=PASSWORD, **kw):
    return client.post("/api/auth/login", json={"username": username, "password": password}, **kw)


def test_register_returns_the_user_without_the_hash(client):
    response = register(client)
    assert response.status_code == 201
    user = response.get_json()["user"]
    assert user["username"] == "alice"
    assert set(user) == {"id", "username", "created_at"}
    assert "hash" not in response.get_data(as_text=True)


def test_password_is_stored_slowly_hashed_and_salted(app, client):
    register(client, "alice")
    register(client, "bob")
    with app.app_context():
        hashes = [u.password_hash for u in db.session.scalars(db.select(User))]
    assert all(h.startswith("scrypt:") for h in hashes)
    assert hashes[0] != hashes[1]
    assert all(PASSWORD not in h for h in hashes)


def test_register_conflict_is_409(client):
    register(client)
    response = register(client)
    assert response.status_code == 409
    assert response.get_json()["error"] == "username_taken"


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [
        ("ab", PASSWORD, "username"),
        ("a" * 65, PASSWORD, "username"),
        ("bad name", PASSWORD, "username"),
        ("ユーザー", PASSWORD, "username"),
        ("alice\n", PASSWORD, "username"),  # "$" in a regex would have let the newline through
        ("alice\u2028", PASSWORD, "username"),
        ("alice", "short", "password"),
        ("alice", "12345678", "password"),
        ("alice", "password", "password"),
        ("alice", "elevenchars", "password"),  # 11: one short of the rule
        ("alice", "123qweasdzxc", "password"),  # long enough, but on the common list
        ("alice", "QwertY123456", "password"),  # the list is compared without regard to case
        (123, PASSWORD, "username"),
        ("alice", None, "password"),
        ("alice", "x" * 257, "password"),
    ],
)
def test_register_rejects_bad_input_naming_the_field(client, username, password, field):
    response = client.post("/api/auth/register", json={"username": username, "password": password})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "validation_error"
    assert body["field"] == field
    assert field in body["message"]


def test_register_accepts_the_boundaries(client):
    assert register(client, "abc", "k3v-9qz!w2pm").status_code == 201  # 12 characters
    assert register(client, "a.b-c_" + "d" * 58, PASSWORD).status_code == 201


def test_register_rejects_unknown_fields(client):
    response = client.post("/api/auth/register", json={"username": "alice", "password": PASSWORD, "admin": True})
    assert response.status_code == 400
    assert response.get_json()["field"] == "admin"


def test_login_returns_tokens_and_user(client):
    register(client)
    response = login(client)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["user"]["username"] == "alice"
    assert body["access_token"] != body["refresh_token"]


def test_login_failure_message_is_the_same_for_unknown_user_and_wrong_password(client):
    register(client)
    wrong = login(client, password="wrong-password")
    unknown = login(client, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_me_returns_the_current_user(api):
    response = api.get("/api/auth/me")
    assert response.status_code == 200
    assert response.get_json()["user"]["username"] == "alice"


def test_refresh_gives_a_working_access_token(api):
    response = api.client.post("/api/auth/refresh", headers=api.headers(api.refresh))
    assert response.status_code == 200
    token = response.get_json()["access_token"]
    assert api.client.get("/api/auth/me", headers=api.headers(token)).status_code == 200


def test_access_token_cannot_refresh(api):
    response = api.client.post("/api/auth/refresh", headers=api.headers(api.access))
    assert response.status_code == 401


def test_refresh_token_cannot_read_tasks(api):
    response = api.client.get("/api/tasks", headers=api.headers(api.refresh))
    assert response.status_code == 401


def test_common_password_list_ships_with_the_package():
    from task_manager import passwords

    common = passwords.common_passwords()
    assert len(common) > 100
    assert all(len(p) >= 12 and p == p.lower() for p in common)
    assert passwords.is_common("1QAZ2WSX3EDC")
    assert not passwords.is_common(PASSWORD)


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaa", "123456789012", "passwordpassword", "qwertyuiopasdf",
                                  "abcdefghijklmn", "iloveyouiloveyou"])
def test_repeats_sequences_and_words_are_refused_with_a_reason(client, weak):
    response = register(client, "alice", weak)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "password" and "推測されやすいパスワードです" in body["message"]


def test_a_password_made_of_the_username_is_refused_at_registration_and_change(client):
    response = register(client, "tanaka_hanako", "tanaka_hanako2024")
    assert response.status_code == 400 and "推測されやすい" in response.get_json()["message"]
    assert register(client, "tanaka_hanako").status_code == 201
    token = login(client, "tanaka_hanako").get_json()["access_token"]
    change = client.post("/api/auth/password", headers={"Authorization": f"Bearer {token}"},
                         json={"current_password": PASSWORD, "new_password": "tanaka_hanako!!"})
    assert change.status_code == 400 and change.get_json()["field"] == "new_password"


@pytest.mark.parametrize("length", [73, 256])
def test_a_long_passphrase_is_taken(client, length):
    phrase = ("correct horse battery staple 東京タワー " * 20)[:length]
    assert len(phrase) == length
    assert register(client, "longphrase", phrase).status_code == 201
    assert login(client, "longphrase", phrase).status_code == 200


def test_common_password_list_is_the_generated_one():
    """The shipped list is zxcvbn's, as scripts/update-common-passwords.py writes it."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("zxcvbn")
    script = Path(__file__).resolve().parents[2] / "scripts" / "update-common-passwords.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_revocation_survives_a_restart(app_config, api):
    api.post("/api/auth/logout")
    restarted = create_app(app_config).test_client()
    assert restarted.get("/api/auth/me", headers=api.headers()).status_code == 401


def test_token_failures_are_401_json(app, api):
    with app.app_context():
        user = db.session.get(User, api.user["id"])
        expired = create_access_token(identity=user, expires_delta=timedelta(seconds=-5))
        expired_refresh = create_refresh_token(identity=user, expires_delta=timedelta(seconds=-5))
    cases = {
        "token_missing": {},
        "token_invalid": {"Authorization": "Bearer not.a.jwt"},
        "token_expired": {"Authorization": f"Bearer {expired}"},
    }
    for error, headers in cases.items():
        response = api.client.get("/api/tasks", headers=headers)
        assert response.status_code == 401, error
        assert response.get_json()["error"] == error
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.client.post("/api/auth/refresh", headers=api.headers(expired_refresh)).status_code == 401
    tampered = api.access[:-4] + ("AAAA" if not api.access.endswith("AAAA") else "BBBB")
    assert api.client.get("/api/tasks", headers=api.headers(tampered)).status_code == 401


def test_token_signed_with_another_key_is_rejected(tmp_path, api):
    other = create_app(make_config(tmp_path / "other", SECRET_KEY="another-secret-key-that-is-long-enough-xx"))
    with other.app_context():
        forged = create_access_token(identity=User(id=api.user["id"], username="alice", password_hash="x"))
    response = api.client.get("/api/auth/me", headers=api.headers(forged))
    assert response.status_code == 401


def test_token_of_a_deleted_user_is_401(app, api):
    with app.app_context():
        db.session.delete(db.session.get(User, api.user["id"]))
        db.session.commit()
    response = api.get("/api/auth/me")
    assert response.status_code == 401
    assert response.get_json()["error"] == "user_not_found"


def test_a_user_deleted_after_the_token_check_is_401_not_500(app):
    """The token check reads the user's id and task counts only (tokens.SignedIn); a handler
    that needs the record loads it, and a record deleted in between is the token check's own
    answer."""
    with app.test_request_context("/api/auth/me"):
        # What @jwt_required leaves when a token passed for a user whose record then went.
        g._jwt_extended_jwt = {"sub": str(2**31 - 1), "type": "access"}
        g._jwt_extended_jwt_user = {"loaded_user": tokens.SignedIn(id=2**31 - 1, task_counts={})}
        with pytest.raises(ApiError) as refused:
            tokens.signed_in_user()
    assert (refused.value.status, refused.value.error) == (401, "user_not_found")
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_sign_out_everywhere_between_the_token_check_and_the_handler_refuses_the_token(api, app):
    """Another request signs the user out everywhere after this one's token was checked: the
    handler, reading the user's record, finds the newer token version and issues nothing."""
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == "alice"))
        user_id, version = user.id, user.token_version
        user.token_version = version + 1  # what tokens.sign_out_everywhere commits
        db.session.commit()
    for presented, refused in ((version, True), (version + 1, False)):
        with app.test_request_context("/api/auth/refresh"):
            g._jwt_extended_jwt = {"sub": str(user_id), "type": "refresh", "ver": presented}
            g._jwt_extended_jwt_user = {"loaded_user": tokens.SignedIn(id=user_id, task_counts={})}
            if refused:
                with pytest.raises(ApiError) as error:
                    tokens.signed_in_user()
                assert (error.value.status, error.value.error) == (401, "token_revoked")
            else:
                assert tokens.signed_in_user().id == user_id


def test_the_token_check_names_the_user_by_id_and_handlers_read_the_record(api, app):
    response = api.get("/api/auth/me")
    assert response.get_json()["user"]["username"] == "alice"
    with app.app_context():
        db.session.execute(db.update(User).values(username="alice2"))
        db.session.commit()
    assert api.get("/api/auth/me").get_json()["user"]["username"] == "alice2"


def test_a_name_is_one_account_whatever_its_case_or_width(app, client):
    assert register(client, "Alice").get_json()["user"]["username"] == "alice"  # stored folded
    for other in ("alice", "ALICE", "ＡＬＩＣＥ"):  # the last as a Japanese IME types it, full width
        taken = register(client, other)
        assert taken.status_code == 409 and taken.get_json()["error"] == "username_taken"
    for typed in ("alice", "Alice", "ａｌｉｃｅ"):
        assert login(client, typed).status_code == 200
    with app.app_context():
        assert db.session.scalars(db.select(User.username)).all() == ["alice"]


def test_an_older_account_with_capitals_signs_in_by_any_case_and_keeps_its_name(app, client):
    with app.app_context():
        register(client, "placeholder")
        db.session.execute(db.update(User).values(username="Bob"))  # as a release before 0005 stored it
        db.session.commit()
    answer = login(client, "bob")
    assert answer.status_code == 200 and answer.get_json()["user"]["username"] == "Bob"
    assert register(client, "BOB").status_code == 409


def test_the_migration_stops_on_names_that_differ_only_in_case_and_changes_nothing(app, runner):
    assert runner.invoke(args=["migrate", "--to", "0004"]).exit_code == 0
    with app.app_context():
        for name in ("carol", "Carol", "dave"):
            db.session.add(User(username=name, password_hash="x"))
        db.session.commit()
    result = runner.invoke(args=["migrate"])
    assert result.exit_code != 0
    assert "usernames that differ only in case: Carol, carol" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert db.session.execute(db.text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        db.session.execute(db.update(User).where(User.username == "Carol").values(username="carol2"))
        db.session.commit()
    assert runner.invoke(args=["migrate"]).exit_code == 0
    with app.app_context():
        assert db.session.execute(db.text("SELECT version_num FROM alembic_version")).scalar() == "0006"
