"""The deployed edge against hostile SIP, each attack next to the legitimate
path it must not break. Raw SIP comes from molecule/resources/sipraw.py (and
sip_torture.py) run on the phone containers; the proxy's own state is read over
its local MI FIFO.

Runs before test_full_stack.py (file order) on the same deployment and leaves
nothing behind: bans are lifted, extra contacts removed.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import contacts_of, mi, other, push_script
from stack import CLIENT, CLIENT2, FS1, PROXY, PROXY_CORE

testinfra_hosts = ["ansible://stack-proxy"]

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
LISTEN = 5098  # a "foreign host" port on the attacker's own container: nothing may be relayed there


def raw(host, **job) -> dict:
    """Run one sipraw job on ``host`` against the proxy and return what it saw."""
    job.setdefault("proxy", PROXY)
    out = host.check_output(f"python3 {push_script(host, RESOURCES / 'sipraw.py')} {shlex.quote(json.dumps(job))}")
    return json.loads(out)


def sub(lab, index):
    return lab["subscribers"][index]


def journal(host, pattern: str, since: str = "-3min") -> int:
    out = host.run(f"journalctl -u opensips --since '{since}' --no-pager | grep -c -- {shlex.quote(pattern)}")
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def attacker():
    return other("stack-client2")


@pytest.fixture(scope="module")
def phone():
    return other("stack-client")


def in_dialog(method: str, ruri: str, route: str, to_tag: str = "forged1", extra: str = "") -> str:
    return (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}}{{n}};rport\r\n"
            f"{route}Max-Forwards: 70\r\nFrom: <sip:1002@lab.sipedge.test>;tag=atk{{n}}\r\n"
            f"To: <sip:9000@lab.sipedge.test>;tag={to_tag}\r\nCall-ID: forged-{method}-{{n}}@{{ip}}\r\n"
            f"CSeq: 2 {method}\r\nContact: <sip:1002@{{local}}>\r\n{extra}Content-Length: 0\r\n\r\n")


# --- 1. forged in-dialog requests: no open relay -----------------------------------------

@pytest.mark.parametrize("ruri, route", [
    (f"sip:victim@{CLIENT2}:{LISTEN}", f"Route: <sip:{PROXY}:5060;lr>\r\n"),          # via the proxy to a foreign host
    (f"sip:victim@{CLIENT2}:{LISTEN}", f"Route: <sip:{PROXY};lr;did=123.456>\r\n"),   # with a made-up dialog cookie
    (f"sip:{PROXY}", f"Route: <sip:victim@{CLIENT2}:{LISTEN};lr>\r\n"),                # a foreign Route
    (f"sip:9000@{FS1}:5060", f"Route: <sip:{PROXY}:5060;lr>\r\n"),                     # to a media server
    (f"sip:victim@{CLIENT2}:{LISTEN}", ""),                                            # no Route at all
], ids=["route-via-proxy", "forged-did", "foreign-route", "to-media-server", "no-route"])
@pytest.mark.parametrize("method", ["INVITE", "BYE", "MESSAGE"])
def test_forged_in_dialog_requests_are_not_relayed(attacker, method, ruri, route):
    seen = raw(attacker, action="send", messages=[in_dialog(method, ruri, route)], listen_port=LISTEN, wait=2)
    assert seen["foreign"] == [], seen["foreign"][:1]
    assert 100 not in seen["codes"] and not any(200 <= c < 300 for c in seen["codes"]), seen["codes"]
    assert seen["codes"] == [404], seen["codes"]


def test_a_forged_ack_is_dropped(attacker):
    seen = raw(attacker, action="send", messages=[in_dialog("ACK", f"sip:victim@{CLIENT2}:{LISTEN}",
                                                            f"Route: <sip:{PROXY}:5060;lr>\r\n")],
               listen_port=LISTEN, wait=2)
    assert seen["foreign"] == [] and seen["codes"] == []


def register_contact(host, lab, index, contact, expires=120):
    me = sub(lab, index)
    seen = raw(host, action="register", user=me["username"], auth_user=me["username"], password=me["password"],
               domain=lab["domain"], contact=contact, expires=expires)
    assert seen["final"] == 200, seen["codes"]


def test_an_initial_ack_without_credentials_goes_nowhere(host, attacker, lab):
    # 1001 registered at the attacker's listening port: an out-of-dialog ACK to
    # 1001 must not be looked up and relayed there
    user = sub(lab, 0)["username"]
    register_contact(attacker, lab, 0, f"sip:{user}@{CLIENT2}:{LISTEN}")
    try:
        ack = (f"ACK sip:{user}@{lab['domain']} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:1002@{lab['domain']}>;tag=atk\r\nTo: <sip:{user}@{lab['domain']}>\r\n"
               f"Call-ID: initial-ack@{{ip}}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
        seen = raw(attacker, action="send", messages=[ack], listen_port=LISTEN, wait=1, listen_wait=2)
        assert seen["codes"] == [] and seen["foreign"] == [], seen
    finally:
        mi(host, "ul_rm", {"table_name": "location", "aor": user})


# --- 2. identity: the credentials that passed are the identity used ----------------------

def register_as(host, lab, target, creds_of, **extra):
    victim, me = sub(lab, target), sub(lab, creds_of)
    return raw(host, action="register", user=victim["username"], auth_user=me["username"], password=me["password"],
               domain=lab["domain"], **extra)


def decoy(kind: str, user: str) -> str:
    return (f'{kind}: Digest username="{user}", realm="x.invalid", nonce="0", uri="sip:x.invalid", '
            'response="00000000000000000000000000000000", algorithm=MD5')


@pytest.mark.parametrize("variant", [
    {"header": "Authorization", "decoys": [decoy("Proxy-Authorization", "1002")]},
    {"header": "Authorization", "decoys": [decoy("Proxy-Authorization", "1002")], "decoy_first": True},
    {"header": "Proxy-Authorization", "decoys": [decoy("Authorization", "1002")], "decoy_first": True},
    {"header": "Authorization", "decoys": [decoy("Authorization", "1002")], "decoy_first": True},
], ids=["auth+decoy-proxy-auth", "decoy-proxy-auth-first", "proxy-auth+decoy-auth", "two-authorizations"])
def test_one_subscriber_cannot_register_another(host, phone, lab, variant):
    victim = sub(lab, 1)["username"]
    before = contacts_of(host, victim)
    seen = register_as(phone, lab, target=1, creds_of=0, contact=f"sip:{victim}@{CLIENT}:5999", **variant)
    assert seen["final"] in (400, 401, 403, 407), seen["codes"]
    assert f"sip:{victim}@{CLIENT}:5999" not in contacts_of(host, victim)
    assert contacts_of(host, victim) == before


def test_credentials_of_one_user_for_another_are_forbidden(host, phone, lab):
    seen = register_as(phone, lab, target=1, creds_of=0, contact=f"sip:x@{CLIENT}:5998")
    assert seen["final"] == 403, seen["codes"]
    assert journal(host, "tried to register") > 0


def test_a_subscriber_still_registers_itself(host, phone, lab):
    me = sub(lab, 0)["username"]
    seen = register_as(phone, lab, target=0, creds_of=0, contact=f"sip:{me}@{CLIENT}:5997", expires=60)
    assert seen["codes"][0] == 401 and seen["final"] == 200, seen["codes"]
    assert f"sip:{me}@{CLIENT}:5997" in contacts_of(host, me)
    mi(host, "ul_rm_contact", {"table_name": "location", "aor": me, "contact": f"sip:{me}@{CLIENT}:5997"})


@pytest.mark.parametrize("variant, expected", [
    ({}, 403),                                                                    # From 1002, 1001's credentials
    ({"decoys": [decoy("Proxy-Authorization", "1002")], "decoy_first": True}, 400),
    ({"decoys": [decoy("Authorization", "1002")]}, 400),
])
def test_from_spoofing_on_invite_is_refused(phone, lab, variant, expected):
    me = sub(lab, 0)
    seen = raw(phone, action="invite", from_user=sub(lab, 1)["username"], callee=lab["callee"], auth_user=me["username"],
               password=me["password"], domain=lab["domain"], **variant)
    assert seen["codes"][:1] == [407] and seen["final"] == expected, seen["codes"]


def test_an_honest_invite_gets_through(phone, lab):
    me = sub(lab, 0)
    seen = raw(phone, action="invite", from_user=me["username"], callee=lab["callee"], auth_user=me["username"],
               password=me["password"], domain=lab["domain"])
    assert seen["codes"][0] == 407 and 100 in seen["codes"][1:], seen["codes"]


def test_identity_headers_from_a_phone_are_stripped(host, phone, lab):
    # 1002 calls 1001, registered at a port the phone itself listens on, with
    # forged identity headers: the INVITE that arrives must not carry them
    callee, caller = sub(lab, 0), sub(lab, 1)
    register_contact(phone, lab, 0, f"sip:{callee['username']}@{CLIENT}:{LISTEN}")
    forged = ["P-Asserted-Identity: <sip:+15550000000@carrier.example>", "Remote-Party-ID: <sip:boss@lab>;party=calling",
              "P-Preferred-Identity: <sip:ceo@lab>"]
    try:
        seen = raw(phone, action="invite", from_user=caller["username"], callee=callee["username"],
                   auth_user=caller["username"], password=caller["password"], domain=lab["domain"], decoys=forged,
                   listen_port=LISTEN)
    finally:
        mi(host, "ul_rm", {"table_name": "location", "aor": callee["username"]})
    invites = [m for m in seen["foreign"] if m.startswith("INVITE ")]
    assert invites, (seen["codes"], seen["foreign"][:1])
    for name in ("P-Asserted-Identity", "Remote-Party-ID", "P-Preferred-Identity"):
        assert not re.search(rf"^{name}:", invites[0], re.M | re.I), invites[0]


# --- 3. management stays on the proxy ----------------------------------------------------

def test_the_scraper_gets_metrics_and_no_management(host, phone):
    assert "opensips_registered_users" in phone.check_output(f"curl -sf -m 5 http://{PROXY}:8888/metrics")
    for path in ("/mi", "/mi/uptime", "/json"):
        out = phone.run(f"curl -s -m 5 -o /tmp/mi.out -w '%{{http_code}}' -H 'Content-Type: application/json' "
                        f"-d '{{\"jsonrpc\":\"2.0\",\"method\":\"uptime\",\"id\":1}}' http://{PROXY}:8888{path}")
        body = phone.run("cat /tmp/mi.out").stdout
        assert out.stdout.strip() != "200" and "Up time" not in body and '"result"' not in body, (path, out.stdout, body)
    # the toolkit's own channel still works, on the proxy only
    assert "Up time" in mi(host, "uptime")


# --- 4. trust: address, transport and port of a media server ---------------------------

def trunk_invite(lab, from_port_note: str) -> str:
    return (f"INVITE sip:{lab['callee']}@{lab['domain']} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:trunk@{lab['domain']}>;tag=trk{{n}}\r\nTo: <sip:{lab['callee']}@{lab['domain']}>\r\n"
            f"Call-ID: trunk-{from_port_note}-{{n}}@{{ip}}\r\nCSeq: 1 INVITE\r\nContact: <sip:trunk@{{local}}>\r\n"
            "Content-Length: 0\r\n\r\n")


def trunk_cancel(lab, from_port_note: str) -> str:
    return (f"CANCEL sip:{lab['callee']}@{lab['domain']} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:trunk@{lab['domain']}>;tag=trk0\r\nTo: <sip:{lab['callee']}@{lab['domain']}>\r\n"
            f"Call-ID: trunk-{from_port_note}-0@{{ip}}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n")


def test_a_media_server_is_trusted_from_its_sip_port_only(fs1_stopped, lab):
    fs1 = fs1_stopped  # its SIP port is free for the spoofing test
    # from its dispatcher URI's port (5060): not challenged, relayed (100 Trying), then cancelled
    # (cancelled well before the stand-ins' 500 ms ring ends, so no call is left answered)
    # (a media server is on the core network: it reaches the proxy's internal socket)
    trusted = raw(fs1, action="send", proxy=PROXY_CORE, local_port=5060, wait=2, pace=0.1,
                  messages=[trunk_invite(lab, "5060"), trunk_cancel(lab, "5060")])
    assert 407 not in trusted["codes"] and 100 in trusted["codes"], trusted["codes"]
    # the same address from another port: a stranger, challenged
    other_port = raw(fs1, action="send", proxy=PROXY_CORE, local_port=5080, wait=2, messages=[trunk_invite(lab, "5080")])
    assert other_port["codes"] == [407], other_port["codes"]


def test_a_phone_is_not_trusted_by_claiming_a_trunk(attacker, lab):
    seen = raw(attacker, action="send", local_port=5060, wait=2, messages=[trunk_invite(lab, "phone")])
    assert seen["codes"] == [407], seen["codes"]


# --- 5. Server header, contact limit ------------------------------------------------------

def test_replies_name_no_version(phone, lab):
    options = (f"OPTIONS sip:{PROXY} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}};rport\r\nMax-Forwards: 70\r\n"
               f"From: <sip:probe@{lab['domain']}>;tag=o1\r\nTo: <sip:{PROXY}>\r\nCall-ID: opt-{{n}}@{{ip}}\r\nCSeq: 1 OPTIONS\r\n"
               "Content-Length: 0\r\n\r\n")
    seen = raw(phone, action="send", messages=[options], wait=1)
    challenged = raw(phone, action="invite", from_user=sub(lab, 0)["username"], callee=lab["callee"],
                     auth_user="nobody", password="x", domain=lab["domain"])
    replies = seen["messages"] + challenged["messages"][:1]
    assert seen["codes"] == [200] and challenged["codes"][0] == 407
    for reply in replies:
        server = re.search(r"^Server: (.*)$", reply, re.M)
        assert server and server.group(1).strip() == "sipedge", reply
        assert "OpenSIPS" not in reply and not re.search(r"\b3\.\d+\.\d+\b", reply), reply


def test_contacts_per_aor_are_capped(host, phone, lab):
    me = sub(lab, 1)
    mi(host, "ul_rm", {"table_name": "location", "aor": me["username"]})
    finals = []
    try:
        for port in range(41001, 41008):
            seen = raw(phone, action="register", user=me["username"], auth_user=me["username"], password=me["password"],
                       domain=lab["domain"], contact=f"sip:{me['username']}@{CLIENT}:{port}", expires=120)
            finals.append(seen["final"])
        assert finals[:5] == [200] * 5 and all(code >= 400 for code in finals[5:]), finals
        assert len(contacts_of(host, me["username"])) == 5
    finally:
        mi(host, "ul_rm", {"table_name": "location", "aor": me["username"]})


# --- 6. abuse limits: password guessing is banned, a busy trunk is not --------------------

def test_password_guessing_is_banned_and_another_source_still_registers(host, attacker, phone, lab):
    me = sub(lab, 1)
    try:
        finals = []
        for _ in range(13):
            seen = raw(attacker, action="register", user=me["username"], auth_user=me["username"],
                       password="guess-" + str(len(finals)), domain=lab["domain"], wait=1)
            finals.append(seen["final"])
        # 10 failures are answered, then the source is dropped
        assert finals[:10] == [401] * 10 and finals[10:] == [0, 0, 0], finals
        assert journal(host, f"auth: {CLIENT2} banned") >= 1
        assert journal(host, f"auth: failed REGISTER for user '{me['username']}' from {CLIENT2}") >= 10
        # banned: even the right password gets nothing from there
        right = raw(attacker, action="register", user=me["username"], auth_user=me["username"],
                    password=me["password"], domain=lab["domain"], wait=1)
        assert right["codes"] == [], right["codes"]
        # another source is not affected
        other_source = raw(phone, action="register", user=me["username"], auth_user=me["username"],
                           password=me["password"], domain=lab["domain"], expires=60)
        assert other_source["final"] == 200, other_source["codes"]
    finally:
        mi(host, "cache_remove", {"system": "local", "attr": f"authban_{CLIENT2}"})
        mi(host, "cache_remove", {"system": "local", "attr": f"authfail_{CLIENT2}"})
    # lifted by the operator (MI cache_remove): the source registers again
    again = raw(attacker, action="register", user=me["username"], auth_user=me["username"],
                password=me["password"], domain=lab["domain"], expires=60)
    assert again["final"] == 200, again["codes"]
    mi(host, "ul_rm", {"table_name": "location", "aor": me["username"]})


def test_a_trunk_at_ten_calls_per_second_is_never_blocked(host, attacker, lab):
    # stack-client2 is not exempt from pike: 120 authenticated calls at 10/s from one address
    s = sub(lab, 1)
    result = sipkit.run_sipp(attacker, "uac_call", f"{PROXY}:5060",
                             accounts=[sipkit.Account(s["username"], s["domain"], s["password"], lab["callee"])],
                             calls=120, rate=10, hold_ms=500)
    assert (result.successful, result.failed) == (120, 0), result.summary()
    assert journal(host, f"pike: flood from {CLIENT2}", since="-1min") == 0


# --- 7. malformed SIP: the proxy keeps serving ------------------------------------------

def opensips_pids(host) -> set[str]:
    return set(host.check_output("pgrep -x opensips").split())


def test_malformed_sip_corpus_leaves_the_proxy_serving(host, phone, lab):
    before = opensips_pids(host)
    assert len(before) > 3
    out = phone.check_output(f"python3 {push_script(phone, RESOURCES / 'sip_torture.py')} {PROXY} 5060 4475 3000")
    summary = json.loads(out)
    assert summary["sent"] == summary["torture"] + 3000, summary
    options = sipkit.run_sipp(phone, "uac_options", f"{PROXY}:5060", calls=20, rate=20)
    assert (options.successful, options.failed) == (20, 0), options.summary()
    s = sub(lab, 0)
    reg = sipkit.run_sipp(phone, "register_auth", f"{PROXY}:5060",
                          accounts=[sipkit.Account(s["username"], s["domain"], s["password"])])
    assert reg.successful == 1, reg.summary()
    assert opensips_pids(host) == before  # no worker crashed and was replaced


def test_no_attack_left_a_dialog_behind(host):
    # last in this module: every call above was answered and hung up, cancelled, or refused
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        active = int(mi(host, "get_statistics", {"statistics": ["active_dialogs"]})["dialog:active_dialogs"])
        if active == 0:
            break
        time.sleep(2)
    assert active == 0, mi(host, "dlg_list")
