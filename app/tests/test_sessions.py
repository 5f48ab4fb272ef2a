"""Sessions end when they should: rotation and reuse detection of refresh tokens, logout
with the refresh token alone, sign out everywhere, password change."""

from datetime import UTC, datetime, timedelta

from flask_jwt_extended import create_access_token, create_refresh_token, decode_token

from task_manager.extensions import db
from task_manager.models import TokenFamily, User
from tests.conftest import PASSWORD, Api


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def refresh(client, token: str):
    return client.post("/api/auth/refresh", headers=bearer(token))


def me(client, token: str):
    return client.get("/api/auth/me", headers=bearer(token))


def expired_access_token(app, api) -> str:
    with app.app_context():
        user = db.session.get(User, api.user["id"])
        payload = decode_token(api.access)
        return create_access_token(identity=user, expires_delta=timedelta(seconds=-5),
                                   additional_claims={"ver": payload["ver"], "fam": payload["fam"]})


def test_refresh_rotates_the_refresh_token(api):
    response = refresh(api.client, api.refresh)
    assert response.status_code == 200
    body = response.get_json()
    assert body["refresh_token"] != api.refresh
    assert body["user"]["username"] == "alice"
    assert me(api.client, body["access_token"]).status_code == 200
    assert refresh(api.client, body["refresh_token"]).status_code == 200  # the new one refreshes in turn


def test_reusing_a_rotated_refresh_token_ends_the_whole_sign_in(api):
    rotated = refresh(api.client, api.refresh).get_json()
    stolen = refresh(api.client, api.refresh)  # the old token again: a copy is in two hands
    assert stolen.status_code == 401
    assert stolen.get_json()["error"] == "token_revoked"
    # Neither the thief nor the owner keeps anything of that sign-in.
    for token in (rotated["refresh_token"],):
        assert refresh(api.client, token).status_code == 401
    for token in (rotated["access_token"], api.access):
        response = me(api.client, token)
        assert response.status_code == 401
        assert response.get_json()["error"] == "token_revoked"


def test_other_sign_ins_survive_a_detected_reuse(client, api):
    other = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).get_json()
    refresh(client, api.refresh)
    refresh(client, api.refresh)
    assert me(client, other["access_token"]).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_rotation_never_makes_a_sign_in_longer(app, api):
    rotated = refresh(api.client, api.refresh).get_json()
    with app.app_context():
        first, second = decode_token(api.refresh), decode_token(rotated["refresh_token"])
    assert first["fam"] == second["fam"]
    assert abs(second["exp"] - first["exp"]) <= 1


def test_tokens_from_before_rotation_still_work_once(app, api):
    # A refresh token issued by the previous release: no family, no version.
    with app.app_context():
        user = db.session.get(User, api.user["id"])
        legacy_refresh = create_refresh_token(identity=user)
        legacy_access = create_access_token(identity=user)
    assert me(api.client, legacy_access).status_code == 200
    response = refresh(api.client, legacy_refresh)
    assert response.status_code == 200
    assert refresh(api.client, response.get_json()["refresh_token"]).status_code == 200
    assert refresh(api.client, legacy_refresh).status_code == 401  # spent


def test_logout_with_the_refresh_token_alone_ends_the_session(api):
    response = api.client.post("/api/auth/logout", headers=bearer(api.refresh))
    assert response.status_code == 200
    assert response.get_json()["revoked"] == 1
    assert refresh(api.client, api.refresh).status_code == 401
    assert me(api.client, api.access).status_code == 401  # the access token of that sign-in too


def test_logout_after_the_access_token_expired(app, api):
    expired = expired_access_token(app, api)
    # The old frontend's request: the expired access token, the refresh token in the body.
    response = api.client.post("/api/auth/logout", headers=bearer(expired), json={"refresh_token": api.refresh})
    assert response.status_code == 200
    assert refresh(api.client, api.refresh).status_code == 401


def test_logout_with_the_refresh_token_in_the_body_only(api):
    response = api.client.post("/api/auth/logout", json={"refresh_token": api.refresh})
    assert response.status_code == 200
    assert refresh(api.client, api.refresh).status_code == 401


def test_logout_with_an_expired_access_token_and_nothing_else_is_401(app, api):
    response = api.client.post("/api/auth/logout", headers=bearer(expired_access_token(app, api)))
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_expired"
    assert api.client.post("/api/auth/logout").status_code == 401


def test_logout_with_the_access_token_ends_its_whole_sign_in(api):
    assert api.post("/api/auth/logout").get_json()["revoked"] == 1
    assert api.get("/api/auth/me").status_code == 401
    assert refresh(api.client, api.refresh).status_code == 401


def test_logout_revokes_access_and_refresh_tokens(api):
    response = api.post("/api/auth/logout", json={"refresh_token": api.refresh})
    assert response.status_code == 200
    assert response.get_json()["revoked"] == 2
    me_after = api.get("/api/auth/me")
    assert me_after.status_code == 401
    assert me_after.get_json()["error"] == "token_revoked"
    assert refresh(api.client, api.refresh).status_code == 401


def test_logout_rejects_a_foreign_or_bad_refresh_token(api, api_factory):
    bob = api_factory("bob")
    assert api.post("/api/auth/logout", json={"refresh_token": bob.refresh}).status_code == 400
    assert api.post("/api/auth/logout", json={"refresh_token": "garbage"}).status_code == 400
    assert api.post("/api/auth/logout", json={"refresh_token": api.access}).status_code == 400
    assert api.post("/api/auth/logout", json={"token": api.refresh}).status_code == 400
    assert api.post("/api/auth/logout", data="not json", content_type="text/plain").status_code == 400
    assert api.get("/api/auth/me").status_code == 200  # nothing was revoked by the failures
    assert api.post("/api/auth/logout", json={"refresh_token": None}).status_code == 200


def test_logout_all_signs_out_every_device(client, api):
    laptop = api
    phone = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).get_json()
    bob = Api(client, "bob")
    response = client.post("/api/auth/logout-all", headers=bearer(laptop.access))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    for token in (laptop.access, phone["access_token"]):
        answer = me(client, token)
        assert answer.status_code == 401
        assert answer.get_json()["error"] == "token_revoked"
    for token in (laptop.refresh, phone["refresh_token"]):
        assert refresh(client, token).status_code == 401
    assert me(client, bob.access).status_code == 200  # other users are not touched
    again = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert me(client, again.get_json()["access_token"]).status_code == 200


def test_logout_all_works_with_the_refresh_token(client, api):
    assert client.post("/api/auth/logout-all", headers=bearer(api.refresh)).status_code == 200
    assert me(client, api.access).status_code == 401


def test_a_token_of_an_older_version_is_refused(app, api):
    with app.app_context():
        db.session.get(User, api.user["id"]).token_version += 1
        db.session.commit()
    response = api.get("/api/auth/me")
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_revoked"


def test_password_change(client, api):
    phone = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).get_json()
    new_password = "a-fresh-long-secret"
    response = api.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": new_password})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert me(client, body["access_token"]).status_code == 200  # the caller goes on with new tokens
    assert refresh(client, body["refresh_token"]).status_code == 200
    for token in (api.access, phone["access_token"]):  # everyone else is signed out
        assert me(client, token).status_code == 401
    assert refresh(client, phone["refresh_token"]).status_code == 401
    old = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401
    assert client.post("/api/auth/login", json={"username": "alice", "password": new_password}).status_code == 200


def test_password_change_refuses_wrong_current_or_weak_new(api):
    cases = [
        ({"current_password": "not-the-password", "new_password": "a-fresh-long-secret"}, 403, "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, 400, "new_password"),
        ({"current_password": PASSWORD, "new_password": "1q2w3e4r5t6y"}, 400, "new_password"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, 400, "new_password"),
        ({"current_password": PASSWORD}, 400, "new_password"),
        ({"current_password": PASSWORD, "new_password": "a-fresh-long-secret", "x": 1}, 400, "x"),
    ]
    for body, status, field in cases:
        response = api.post("/api/auth/password", json=body)
        assert response.status_code == status, body
        assert response.get_json()["field"] == field
    assert api.get("/api/auth/me").status_code == 200  # nothing changed


def test_password_change_needs_an_access_token(api):
    body = {"current_password": PASSWORD, "new_password": "a-fresh-long-secret"}
    assert api.client.post("/api/auth/password", json=body, headers=bearer(api.refresh)).status_code == 401


def test_token_answers_are_never_cached(client, api):
    login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    refreshed = refresh(client, api.refresh)
    for response in (login, refreshed):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


def test_expired_sign_ins_are_pruned_at_login(app, client, api):
    with app.app_context():
        family = db.session.get(TokenFamily, decode_token(api.refresh)["fam"])
        family.expires_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
        db.session.commit()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    with app.app_context():
        assert db.session.get(TokenFamily, decode_token(api.refresh, allow_expired=True)["fam"]) is None
