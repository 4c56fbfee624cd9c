"""Dialogs survive a proxy restart. A module of its own, run after test_full_stack.py:
pytest groups the tests that take testinfra's ``host`` fixture, so within one module a
restart could run before a test that reads the statistics it resets."""

from __future__ import annotations

import re
import threading
import time

import pytest

import sipkit
from opensips_checks import mi, other
from test_full_stack import CLIENT, PROXY, db, wait_for

testinfra_hosts = ["ansible://stack-proxy"]


@pytest.fixture(scope="module")
def client():
    return other("stack-client")

RESTART_CALLEE_PORT = 5073
# the proxy's own dialog table (opensips_dialog_table: dialog_<inventory name>)
DIALOG_TABLE = "dialog_stack_proxy"


def test_a_call_set_up_before_a_restart_still_ends_with_bye(host, client, lab):
    """A subscriber call held across `systemctl restart opensips`: the caller's BYE after the restart is
    relayed (the dialog was reloaded from the database) and the callee answers it."""
    callee, caller = lab["subscribers"][0], lab["subscribers"][1]
    mi(host, "ul_rm", {"table_name": "location", "aor": callee["username"]})
    reg = sipkit.run_sipp(client, "register_auth", f"{PROXY}:5060", local_port=RESTART_CALLEE_PORT,
                          accounts=[sipkit.Account(callee["username"], callee["domain"], callee["password"])])
    assert reg.successful == 1, reg.summary()
    client.run(f"pkill -f '[s]ipp -sf .* -p {RESTART_CALLEE_PORT}'; rm -rf /tmp/callee2; mkdir -p /tmp/callee2")
    client.check_output(f"cd /tmp/callee2 && (sipp -sf {sipkit.SCENARIO_DIR}/uas_media_server.xml -i {CLIENT} "
                       f"-p {RESTART_CALLEE_PORT} -m 1 -nostdin -trace_msg -message_file messages.log >/dev/null 2>&1 &) ; sleep 1")
    outcome: dict = {}
    uac = threading.Thread(target=lambda: outcome.setdefault("result", sipkit.run_sipp(
        client, "uac_call", f"{PROXY}:5060", hold_ms=25000, recv_timeout_ms=40000,
        accounts=[sipkit.Account(caller["username"], caller["domain"], caller["password"], callee["username"])])))
    uac.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "BYE" not in client.run("cat /tmp/callee2/messages.log").stdout \
            and int(mi(host, "get_statistics", {"statistics": ["active_dialogs"]})["dialog:active_dialogs"]) == 0:
        time.sleep(0.5)
    assert int(mi(host, "get_statistics", {"statistics": ["active_dialogs"]})["dialog:active_dialogs"]) >= 1
    # the dialog reaches the database within opensips_dialog_db_update_period (10 s, delayed mode),
    # before the restart: it would survive a crash too
    assert wait_for(lambda: int(db(f"SELECT COUNT(*) FROM {DIALOG_TABLE}")) >= 1, timeout=15), \
        db(f"SELECT * FROM {DIALOG_TABLE}")
    # and only there: the vendor's shared table stays empty
    assert int(db("SELECT COUNT(*) FROM dialog")) == 0
    host.check_output("systemctl restart opensips")
    uac.join(90)
    result = outcome["result"]
    assert (result.successful, result.failed) == (1, 0), result.summary()
    callee_log = client.run("cat /tmp/callee2/messages.log").stdout
    assert re.search(r"^BYE ", callee_log, re.M), callee_log[-2000:]
    assert int(mi(host, "get_statistics", {"statistics": ["active_dialogs"]})["dialog:active_dialogs"]) == 0
