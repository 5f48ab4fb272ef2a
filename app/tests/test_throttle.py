"""Failed logins slow down per (account, client) and per client, never lock the owner out;
registrations are limited per client."""

import time
from datetime import timedelta

import pytest

from task_manager import devices, throttle
from task_manager.extensions import db
from task_manager.models import LoginFailure, User
from tests.conftest import PASSWORD

HOME = {"REMOTE_ADDR": "198.51.100.7"}
ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}


def register(client, username="alice", password=PASSWORD, environ=None):
    return client.post("/api/auth/register", json={"username": username, "password": password},
                       environ_base=environ or {})


def login(client, username="alice", password=PASSWORD, environ=None):
    return client.post("/api/auth/login", json={"username": username, "password": password},
                       environ_base=environ or {})


def age(app, seconds: float) -> None:
    """Move every recorded event into the past, as if that much time went by."""
    with app.app_context():
        # In Python: SQLite would subtract an interval from the stored text as a number.
        for event in db.session.scalars(db.select(LoginFailure)):
            event.failed_at -= timedelta(seconds=seconds)
        db.session.commit()


def test_someone_elses_failures_never_hold_up_the_owner_elsewhere(app_with):
    # The old lock: five wrong passwords from anywhere locked the account for everyone.
    app = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=3, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    for _ in range(3):
        assert login(client, password="wrong-password", environ=ATTACKER).status_code == 401
    throttled = login(client, environ=ATTACKER)  # even the right password waits, from there
    assert throttled.status_code == 429
    assert throttled.get_json()["error"] == "too_many_attempts"
    assert 55 <= int(throttled.headers["Retry-After"]) <= 60
    assert "60秒後" in throttled.get_json()["message"] or "59秒後" in throttled.get_json()["message"]
    assert login(client, environ=HOME).status_code == 200  # the owner, from their own device


def test_waits_double_with_each_failure_up_to_the_cap(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=1, LOGIN_BACKOFF_BASE_SECONDS=10, LOGIN_BACKOFF_MAX_SECONDS=40)
    client = app.test_client()
    register(client)
    waits = []
    for _ in range(5):
        assert login(client, password="wrong-password", environ=ATTACKER).status_code == 401
        response = login(client, password="wrong-password", environ=ATTACKER)
        assert response.status_code == 429  # a throttled try is not counted as a failure
        waits.append(int(response.headers["Retry-After"]))
        age(app, waits[-1])
    assert waits == [10, 20, 40, 40, 40]


def test_backoff_formula(app_with):
    app = app_with(LOGIN_BACKOFF_BASE_SECONDS=2, LOGIN_BACKOFF_MAX_SECONDS=900)
    with app.app_context():
        assert [throttle.backoff(n, 5) for n in (0, 4, 5, 6, 7, 13, 14, 10_000)] == [0, 0, 2, 4, 8, 512, 900, 900]
        assert throttle.backoff(1, 0) == 2


def test_a_success_clears_its_pair(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=3, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    for _ in range(2):
        assert login(client, password="wrong-password").status_code == 401
    assert login(client).status_code == 200
    for _ in range(3):  # counted from zero again
        assert login(client, password="wrong-password").status_code == 401
    assert login(client).status_code == 429


def test_one_client_spraying_across_accounts_slows_down(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_CLIENT=3, LOGIN_FREE_FAILURES_PER_ACCOUNT=100,
                   LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    for name in ("u1", "u2", "u3"):
        assert login(client, name, "whatever-pw", environ=ATTACKER).status_code == 401
    assert login(client, "u4", "whatever-pw", environ=ATTACKER).status_code == 429
    assert login(client, "u4", "whatever-pw", environ=HOME).status_code == 401


def test_failures_are_forgotten_after_the_window(app_with):
    app = app_with(LOGIN_FAILURE_WINDOW_SECONDS=600, LOGIN_FREE_FAILURES_PER_ACCOUNT=2,
                   LOGIN_BACKOFF_BASE_SECONDS=3600, LOGIN_BACKOFF_MAX_SECONDS=7200)
    client = app.test_client()
    register(client)
    login(client, password="wrong-password")
    login(client, password="wrong-password")
    assert login(client).status_code == 429
    age(app, 601)
    assert login(client).status_code == 200


def test_password_change_guesses_count_as_login_failures(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=2, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    token = login(client).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"current_password": "a-wrong-guess", "new_password": "a-fresh-long-secret"}
    for _ in range(2):
        response = client.post("/api/auth/password", json=body, headers=headers)
        assert response.status_code == 403
        assert response.get_json()["field"] == "current_password"
    response = client.post("/api/auth/password", json={**body, "current_password": PASSWORD}, headers=headers)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("address", "key"),
    [("192.0.2.1", "192.0.2.1"), ("::ffff:192.0.2.1", "192.0.2.1"), ("2001:db8:1:2:3::4", "2001:db8:1:2::/64"),
     ("fe80::1%eth0", "fe80::/64"), ("", "unknown"), (None, "unknown"), ("not-an-ip", "unknown")],
)
def test_a_client_is_its_address_or_its_ipv6_64(address, key):
    assert throttle.client_key(address) == key


def test_registration_is_limited_per_client(app_with):
    app = app_with(REGISTER_MAX_PER_CLIENT=2, REGISTER_WINDOW_SECONDS=3600)
    client = app.test_client()
    assert register(client, "bad name", environ=ATTACKER).status_code == 400  # invalid input costs nothing
    assert register(client, "user1", environ=ATTACKER).status_code == 201
    assert register(client, "user1", environ=ATTACKER).status_code == 409  # a lookup, counted too
    response = register(client, "user2", environ=ATTACKER)
    assert response.status_code == 429
    assert response.get_json()["error"] == "too_many_attempts"
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    assert register(client, "user2", environ=HOME).status_code == 201  # another client is not held up
    age(app, 3601)
    assert register(client, "user3", environ=ATTACKER).status_code == 201


def test_throttle_settings_are_checked(tmp_path):
    from task_manager import create_app
    from task_manager.config import ConfigError
    from tests.conftest import make_config

    with pytest.raises(ConfigError, match="REGISTER_MAX_PER_CLIENT"):
        create_app(make_config(tmp_path, REGISTER_MAX_PER_CLIENT=0))
    with pytest.raises(ConfigError, match="LOGIN_FREE_FAILURES_PER_CLIENT"):
        create_app(make_config(tmp_path, LOGIN_FREE_FAILURES_PER_CLIENT=-1))
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        create_app(make_config(tmp_path, TRUSTED_PROXIES="1"))


OFFICE = {"REMOTE_ADDR": "192.0.2.50"}  # one address for everyone behind it


def device_login(client, device_token, username="alice", password=PASSWORD, environ=None):
    return client.post("/api/auth/login", environ_base=environ or {},
                       json={"username": username, "password": password, "device_token": device_token})


def test_others_spraying_from_the_owners_address_never_holds_up_the_owners_device(app_with):
    # Issue 32: 50 failed sign-ins for random names from one address made the right password
    # of an existing account from that address answer 429.
    app = app_with(LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    device_token = login(client, environ=OFFICE).get_json()["device_token"]
    for n in range(50):
        assert login(client, f"random{n}", "whatever-pw", environ=OFFICE).status_code == 401
    assert login(client, "random50", "whatever-pw", environ=OFFICE).status_code == 429  # the sprayer waits
    assert device_login(client, device_token, environ=OFFICE).status_code == 200  # the owner does not
    # A device never seen before is held to the address's failures: a delay, named in Retry-After.
    new_device = login(client, environ=OFFICE)
    assert new_device.status_code == 429 and int(new_device.headers["Retry-After"]) > 0


def test_guessing_one_account_from_many_addresses_slows_them_never_the_owners_device(app_with):
    app = app_with(LOGIN_FREE_FAILURES_ACROSS_CLIENTS=20, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    device_token = login(client, environ=HOME).get_json()["device_token"]
    for n in range(20):
        attacker = {"REMOTE_ADDR": f"203.0.113.{n + 1}"}
        assert login(client, password="wrong-password", environ=attacker).status_code == 401
    slowed = login(client, password="wrong-password", environ={"REMOTE_ADDR": "203.0.113.200"})
    assert slowed.status_code == 429 and 55 <= int(slowed.headers["Retry-After"]) <= 60
    assert device_login(client, device_token, environ=HOME).status_code == 200
    assert device_login(client, device_token, environ={"REMOTE_ADDR": "198.51.100.99"}).status_code == 200
    # Another account is not slowed by this one's guesses.
    register(client, "bob", environ=HOME)
    assert login(client, "bob", environ={"REMOTE_ADDR": "203.0.113.201"}).status_code == 200


def test_a_device_token_is_trusted_only_for_its_own_account_and_its_own_failures(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_ACCOUNT=2, LOGIN_FREE_FAILURES_PER_CLIENT=2, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    register(client, "bob", environ=HOME)
    bobs = login(client, "bob", environ=HOME).get_json()["device_token"]
    alices = login(client, environ=HOME).get_json()["device_token"]
    for _ in range(2):
        assert login(client, "carol", "whatever-pw", environ=OFFICE).status_code == 401
    for token in (bobs, alices[:-2] + "xx", "not-a-token"):  # another's, forged, malformed
        assert device_login(client, token, environ=OFFICE).status_code == 429
    # The trusted device's own wrong passwords slow it, as a pair's would.
    for _ in range(2):
        assert device_login(client, alices, password="wrong-password", environ=OFFICE).status_code == 401
    assert device_login(client, alices, environ=OFFICE).status_code == 429
    assert login(client, environ=HOME).status_code == 200  # that device's failures are its own
    with app.app_context():
        alice = db.session.scalar(db.select(User).where(User.username == "alice"))
        assert devices.trusted(alices, alice) is not None
        app.config["LOGIN_DEVICE_DAYS"] = 1 / 86400  # a second: the token, two seconds old, has expired
        time.sleep(2.1)
        assert devices.trusted(alices, alice) is None


def test_a_password_change_or_signing_out_everywhere_ends_every_device_tokens_trust(app_with):
    app = app_with(LOGIN_FREE_FAILURES_PER_CLIENT=2, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    signed_in = login(client, environ=OFFICE).get_json()
    old_token = signed_in["device_token"]
    changed = client.post("/api/auth/password", environ_base=OFFICE,
                          headers={"Authorization": f"Bearer {signed_in['access_token']}"},
                          json={"current_password": PASSWORD, "new_password": "a-fresh-long-secret"})
    assert changed.status_code == 200
    new_token = changed.get_json()["device_token"]
    for _ in range(2):
        assert login(client, "carol", "whatever-pw", environ=OFFICE).status_code == 401
    assert device_login(client, old_token, password="a-fresh-long-secret", environ=OFFICE).status_code == 429
    answer = device_login(client, new_token, password="a-fresh-long-secret", environ=OFFICE)
    assert answer.status_code == 200
    client.post("/api/auth/logout-all", headers={"Authorization": f"Bearer {answer.get_json()['access_token']}"})
    assert device_login(client, new_token, password="a-fresh-long-secret", environ=OFFICE).status_code == 429


def test_others_failures_at_the_name_never_hold_up_the_signed_in_owners_password_change(app_with):
    app = app_with(LOGIN_FREE_FAILURES_ACROSS_CLIENTS=3, LOGIN_BACKOFF_BASE_SECONDS=60)
    client = app.test_client()
    register(client)
    token = login(client, environ=HOME).get_json()["access_token"]
    for n in range(4):
        login(client, password="wrong-password", environ={"REMOTE_ADDR": f"203.0.113.{n + 1}"})
    assert login(client, environ={"REMOTE_ADDR": "203.0.113.99"}).status_code == 429  # a new device waits
    changed = client.post("/api/auth/password", environ_base=HOME, headers={"Authorization": f"Bearer {token}"},
                          json={"current_password": PASSWORD, "new_password": "a-fresh-long-secret"})
    assert changed.status_code == 200


def test_registrations_from_one_ipv6_48_are_limited_across_its_64s(app_with):
    app = app_with(REGISTER_MAX_PER_CLIENT=2, REGISTER_MAX_PER_NETWORK=3, REGISTER_WINDOW_SECONDS=3600)
    client = app.test_client()
    # A new /64 for each account, all in 2001:db8:7::/48, as one who holds the /48 would.
    for n in range(3):
        assert register(client, f"user{n}", environ={"REMOTE_ADDR": f"2001:db8:7:{n}::1"}).status_code == 201
    refused = register(client, "user3", environ={"REMOTE_ADDR": "2001:db8:7:99::1"})
    assert refused.status_code == 429 and 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert register(client, "user3", environ={"REMOTE_ADDR": "2001:db8:8::1"}).status_code == 201  # another /48
    assert register(client, "user4", environ=HOME).status_code == 201  # IPv4 has no /48


@pytest.mark.parametrize(("address", "network"), [("2001:db8:1:2:3::4", "2001:db8:1::/48"),
                                                 ("::ffff:192.0.2.1", None), ("192.0.2.1", None), (None, None)])
def test_an_ipv6_client_belongs_to_its_48(address, network):
    assert throttle.network_key(address) == network
