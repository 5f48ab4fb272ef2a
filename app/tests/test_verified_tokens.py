"""A worker remembers the tokens it verified (verified_tokens.py), and that changes nothing
a token may do: it still expires on time, its revocation still counts at once, and another
app's key still refuses it."""

import time
from datetime import timedelta

import jwt
import pytest
from flask import Flask, g
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    decode_token,
    get_current_user,
    get_jwt,
    get_jwt_header,
    jwt_required,
    verify_jwt_in_request,
)

from task_manager import verified_tokens
from task_manager.extensions import db
from task_manager.models import User


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def short_lived_token(app, api, seconds: float) -> str:
    with app.app_context():
        user = db.session.get(User, api.user["id"])
        payload = decode_token(api.access)
        return create_access_token(identity=user, expires_delta=timedelta(seconds=seconds),
                                   additional_claims={"ver": payload["ver"], "fam": payload["fam"]})


def test_a_remembered_token_still_expires_on_time(app, api):
    token = short_lived_token(app, api, 1.5)
    assert api.client.get("/api/tasks", headers=bearer(token)).status_code == 200
    assert token in app.extensions["verified_tokens"]
    time.sleep(1.6)
    response = api.client.get("/api/tasks", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_expired"
    assert token not in app.extensions["verified_tokens"]


def test_a_remembered_token_is_refused_once_revoked(api):
    assert api.get("/api/tasks").status_code == 200  # verified, and remembered
    assert api.post("/api/auth/logout", json={"refresh_token": api.refresh}).status_code == 200
    response = api.get("/api/tasks")
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_revoked"


def test_a_token_one_app_verified_is_refused_by_an_app_with_another_key(app, api, app_with):
    assert api.get("/api/tasks").status_code == 200
    other = app_with(SECRET_KEY="another-key-" + "y" * 40, JWT_SECRET_KEY="another-key-" + "y" * 40)
    response = other.test_client().get("/api/tasks", headers=api.headers())
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_invalid"


def test_a_forged_signature_is_never_taken_for_a_remembered_token(api):
    assert api.get("/api/tasks").status_code == 200
    head, payload, signature = api.access.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert api.client.get("/api/tasks", headers=bearer(forged)).json["error"] == "token_invalid"


def test_the_memory_is_bounded(app, api, monkeypatch):
    monkeypatch.setattr(verified_tokens, "MAX_ENTRIES", 3)
    tokens = [short_lived_token(app, api, 600 + n) for n in range(5)]
    for token in tokens:
        assert api.client.get("/api/tasks", headers=bearer(token)).status_code == 200
    assert list(app.extensions["verified_tokens"]) == tokens[2:]  # the oldest went first


def test_a_leeway_given_as_a_timedelta_counts_as_pyjwt_counts_it(app, api):
    app.config["JWT_DECODE_LEEWAY"] = timedelta(seconds=30)
    token = short_lived_token(app, api, -2)  # expired, within the leeway
    for _ in range(2):  # verified, then remembered
        assert api.client.get("/api/tasks", headers=bearer(token)).status_code == 200
    assert token in app.extensions["verified_tokens"]


def test_a_remembered_token_s_header_is_not_decoded_again(app, api, monkeypatch):
    assert api.get("/api/tasks").status_code == 200  # verified, and remembered with its header
    with app.app_context():
        assert verified_tokens.remembered_headers(api.access) == jwt.get_unverified_header(api.access)
    decoded = []
    library = jwt.get_unverified_header
    monkeypatch.setattr(jwt, "get_unverified_header", lambda token: decoded.append(token) or library(token))
    assert api.get("/api/tasks").status_code == 200
    assert decoded == []  # fails if flask-jwt-extended reads the header another way
    other = short_lived_token(app, api, 600)
    assert api.client.get("/api/tasks", headers=bearer(other)).status_code == 200
    assert other in decoded  # a token not yet verified is read by the library


def test_an_app_with_the_library_s_own_manager_still_reads_a_token_s_header():
    """The header's reader is replaced for the whole process: an app whose JWTManager keeps
    nothing has its tokens' headers read by the library, as before."""
    plain = Flask("plain")
    plain.config["JWT_SECRET_KEY"] = "plain-key-" + "z" * 40
    JWTManager(plain)
    plain.get("/plain")(jwt_required()(lambda: {"ok": True}))
    with plain.app_context():
        token = create_access_token(identity="someone")
    assert plain.test_client().get("/plain", headers=bearer(token)).get_json() == {"ok": True}


def test_a_remembered_access_token_leaves_the_request_as_the_library_leaves_it(app, api, monkeypatch):
    """The library judges a token it has not seen; access_token_required's shorter way judges
    it once remembered, and what a view reads of the token is then the same."""

    def seen() -> tuple:
        return get_jwt(), get_jwt_header(), get_current_user(), g._jwt_extended_jwt_location

    with app.test_request_context("/api/tasks", headers=api.headers()):
        assert not verified_tokens.verify_access_token()  # not remembered yet: nothing set
        assert g.get("_jwt_extended_jwt") is None
        verify_jwt_in_request()
        by_the_library = seen()
    with app.test_request_context("/api/tasks", headers=api.headers()):
        assert verified_tokens.verify_access_token()
        assert seen() == by_the_library
    assert by_the_library[2].id == api.user["id"]

    library = verified_tokens.verify_jwt_in_request
    judged = []
    monkeypatch.setattr(verified_tokens, "verify_jwt_in_request", lambda: judged.append(1) or library())
    assert api.get("/api/tasks").status_code == 200
    assert judged == []  # fails if the library judged a remembered token again
    other = short_lived_token(app, api, 600)
    assert api.client.get("/api/tasks", headers=bearer(other)).status_code == 200
    assert judged == [1]  # a token not yet remembered goes the library's way


def test_a_remembered_token_whose_user_is_gone_is_answered_by_the_library(app, api):
    assert api.get("/api/tasks").status_code == 200
    with app.app_context():
        db.session.delete(db.session.get(User, api.user["id"]))
        db.session.commit()
    response = api.get("/api/tasks")
    assert (response.status_code, response.get_json()["error"]) == (401, "user_not_found")


def test_a_remembered_refresh_token_still_reads_no_tasks(app, api):
    refreshed = api.client.post("/api/auth/refresh", headers=api.headers(api.refresh))
    assert refreshed.status_code == 200
    spent = api.refresh  # verified by /refresh, so remembered
    assert spent in app.extensions["verified_tokens"]
    token = refreshed.get_json()["refresh_token"]
    assert api.client.post("/api/auth/refresh", headers=bearer(token)).status_code == 200
    for refresh in (spent, token):
        assert api.client.get("/api/tasks", headers=bearer(refresh)).status_code == 401


@pytest.mark.parametrize("header", ["Bearer  {token}", "Bearer {token}, Basic eA==", " Bearer {token} "])
def test_a_header_of_another_shape_is_read_as_the_library_reads_it(api, header):
    assert api.get("/api/tasks").status_code == 200  # remembered
    value = header.format(token=api.access)
    assert api.client.get("/api/tasks", headers={"Authorization": value}).status_code == 200
    refused = api.client.get("/api/tasks", headers={"Authorization": f"Bearer {api.access} extra"})
    assert (refused.status_code, refused.get_json()["error"]) == (401, "token_invalid")
