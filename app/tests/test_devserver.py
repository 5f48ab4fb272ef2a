"""run.py honours the manual's FLASK_DEBUG=1 (13.2) on the loopback address only."""

import pytest

from task_manager.devserver import debug_from


@pytest.mark.parametrize(("environ", "host", "debug"), [
    ({}, "127.0.0.1", False),
    ({"FLASK_DEBUG": "1"}, "127.0.0.1", True),
    ({"FLASK_DEBUG": "true"}, "localhost", True),
    ({"FLASK_DEBUG": "1"}, "::1", True),
    ({"FLASK_DEBUG": "0"}, "0.0.0.0", False),  # noqa: S104  (the address refused with the debugger)
    ({"FLASK_DEBUG": ""}, "0.0.0.0", False),  # noqa: S104
])
def test_flask_debug_turns_the_debugger_on_where_only_this_machine_reaches_it(environ, host, debug):
    assert debug_from(environ, host) is debug


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.org"])  # noqa: S104
def test_the_debugger_is_refused_on_an_address_others_reach(host):
    with pytest.raises(SystemExit, match=f"FLASK_RUN_HOST is {host}"):
        debug_from({"FLASK_DEBUG": "1"}, host)
