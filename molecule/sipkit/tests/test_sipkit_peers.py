"""The SIP test kit against real SIPp peers: calls, CANCEL, OPTIONS and digest REGISTER."""

import os
import time

import pytest
import testinfra

import sipkit

testinfra_hosts = ["ansible://sipkit-client"]

UAS = "10.210.10.20"
MEDIA = f"{UAS}:5060"
REGISTRAR = f"{UAS}:5070"
DOMAIN = "sipkit.test"
ALICE = sipkit.Account("alice", DOMAIN, "alice-secret", "1000")


@pytest.fixture(scope="module")
def uas():
    return testinfra.get_host("ansible://sipkit-uas", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def wait_for_invites(uas, at_least, timeout=10.0):
    """The UAS's call log is flushed by SIPp on its own schedule: poll it."""
    deadline = time.monotonic() + timeout
    count = sipkit.uas_invites(uas, "media")
    while count < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        count = sipkit.uas_invites(uas, "media")
    return count


@pytest.mark.parametrize("unit", ["sipkit-uas-media", "sipkit-uas-registrar"])
def test_uas_services_run(uas, unit):
    service = uas.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("port", [5060, 5070])
def test_uas_listens(uas, port):
    assert uas.socket(f"udp://{UAS}:{port}").is_listening


def test_challenger_accounts_are_private(uas):
    users = uas.file("/var/lib/sipkit/registrar/users.csv")
    assert users.mode == 0o600
    assert users.user == "root"


def test_call_completes_and_reaches_the_uas(host, uas):
    before = sipkit.uas_invites(uas, "media")
    result = sipkit.run_sipp(host, "uac_call", MEDIA, accounts=[ALICE], calls=5, rate=5, hold_ms=200)
    assert result.rc == 0, result.summary()
    assert result.successful == 5, result.summary()
    assert result.failed == 0, result.summary()
    assert len(result.response_times_ms) == 5
    assert result.p50() >= 500  # the stand-in rings 500 ms before it answers
    assert wait_for_invites(uas, before + 5) == before + 5


def test_options_probe_is_answered(host):
    result = sipkit.run_sipp(host, "uac_options", MEDIA, calls=3, rate=10)
    assert result.rc == 0, result.summary()
    assert result.successful == 3, result.summary()


def test_cancel_of_a_ringing_call_ends_with_487(host):
    result = sipkit.run_sipp(host, "uac_cancel", MEDIA, accounts=[ALICE], calls=2, rate=5)
    assert result.rc == 0, result.summary()
    assert result.successful == 2, result.summary()


def test_register_answers_the_challenge(host):
    result = sipkit.run_sipp(host, "register_auth", REGISTRAR, accounts=[ALICE])
    assert result.rc == 0, result.summary()
    assert result.successful == 1, result.summary()


def test_register_several_accounts_in_one_run(host):
    bob = sipkit.Account("bob", DOMAIN, "bob-secret")
    result = sipkit.run_sipp(host, "register_auth", REGISTRAR, accounts=[ALICE, bob], calls=2)
    assert (result.rc, result.successful, result.failed) == (0, 2, 0), result.summary()


@pytest.mark.parametrize(
    "account",
    [sipkit.Account("alice", DOMAIN, "wrong-password"), sipkit.Account("mallory", DOMAIN, "anything")],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_rejected(host, account):
    result = sipkit.run_sipp(host, "register_reject", REGISTRAR, accounts=[account])
    assert result.rc == 0, result.summary()
    assert result.successful == 1, result.summary()


def test_register_with_a_wrong_password_is_reported_as_failed(host):
    """The kit must not hide a failure: the success scenario fails on a 403."""
    result = sipkit.run_sipp(host, "register_auth", REGISTRAR,
                             accounts=[sipkit.Account("alice", DOMAIN, "wrong-password")])
    assert result.rc != 0, result.summary()
    assert result.successful == 0, result.summary()
    assert result.failed == 1, result.summary()


def test_a_call_to_a_dead_port_is_reported_as_failed(host):
    result = sipkit.run_sipp(host, "uac_call", f"{UAS}:5999", accounts=[ALICE],
                             timeout_s=15, recv_timeout_ms=3000)
    assert result.rc != 0, result.summary()
    assert result.successful == 0, result.summary()
