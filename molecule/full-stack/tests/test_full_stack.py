"""The whole edge, deployed from the lab inventory, proved with real SIP traffic.

Each case asserts on what SIPp (or the TLS/WSS phone) saw and on the proxy's
own state: MI (ul_dump, ds_list, dialog statistics) and the database rows.
The accounts and numbers are read from the lab inventory, not copied here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time

import pytest

import sipkit
from opensips_checks import destinations, location, mi, other, wait_for
from stack import CLIENT, CLIENT2, MEDIA, PROXY, RELAY  # noqa: F401 (CLIENT2: the attacker)

testinfra_hosts = ["ansible://stack-proxy"]

DB_CLI = "mysql --defaults-file=/etc/mysql/opensips-db-admin.cnf -N -B opensips"
CA = "/tmp/stack-lab-ca.pem"


# --- what the lab inventory says ---------------------------------------------------------

def account(lab, index, callee=None, password=None):
    s = lab["subscribers"][index]
    return sipkit.Account(s["username"], s["domain"], s["password"] if password is None else password,
                          callee if callee is not None else lab["callee"])


@pytest.fixture(scope="module")
def client():
    return other("stack-client")


def db(query: str) -> str:
    return other("stack-db").check_output(f'{DB_CLI} -e "{query}"')


def contacts(host) -> str:
    """Every registration in memory, as one string to search."""
    return json.dumps(location(host))


def active_dialogs(host) -> int:
    stats = mi(host, "get_statistics", {"statistics": ["active_dialogs"]})
    return int(stats["dialog:active_dialogs"])



def received(message_log: str, method: str) -> str:
    """The first message SIPp's ``-trace_msg`` log shows as received and starting with ``method``."""
    for block in re.split(r"^\S+ message (?=received|sent)", message_log, flags=re.M):
        if block.startswith("received"):
            body = block.split("\n", 1)[1].lstrip("\n")
            if body.startswith(method + " "):
                return body
    raise AssertionError(f"no {method} received in:\n{message_log[:3000]}")


def call_ids(result: sipkit.SippResult) -> set[str]:
    """The Call-IDs of the calls a traced SIPp run placed."""
    ids = set(re.findall(r"^Call-ID: *(\S+)", result.messages, re.M))
    assert ids, result.summary()
    return ids


def cdrs(ids) -> dict[str, list[tuple[str, str]]]:
    """Every CDR row of each Call-ID: [("acc" | "missed", sip_code), ...]. The rows are
    written when a call ends, at once for a missed call and within the dialog's BYE."""
    quoted = ",".join(f"'{i}'" for i in ids)
    rows = db(f"SELECT 'acc', callid, sip_code FROM acc WHERE method='INVITE' AND callid IN ({quoted}) "
              f"UNION ALL SELECT 'missed', callid, sip_code FROM missed_calls WHERE callid IN ({quoted})")
    found: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for line in rows.splitlines():
        table, call_id, code = line.split("\t")
        found[call_id].append((table, code))
    return found


def register(client_host, acc, **options) -> sipkit.SippResult:
    return sipkit.run_sipp(client_host, "register_auth", f"{PROXY}:5060", accounts=[acc], **options)


def call(client_host, acc, scenario="uac_call", **options) -> sipkit.SippResult:
    return sipkit.run_sipp(client_host, scenario, f"{PROXY}:5060", accounts=[acc], **options)


# --- 1. REGISTER -------------------------------------------------------------------------

def test_register_is_challenged_then_accepted(host, client, lab):
    result = register(client, account(lab, 0), trace_messages=True)
    assert (result.rc, result.successful) == (0, 1), result.summary()
    assert "SIP/2.0 401 Unauthorized" in result.messages and "SIP/2.0 200 OK" in result.messages
    assert f"sip:{lab['subscribers'][0]['username']}@{CLIENT}" in contacts(host)


def test_wrong_password_is_rejected(host, client, lab):
    # from a clean slate: the attack cases registered this user from the same phone
    mi(host, "ul_rm", {"table_name": "location", "aor": lab["subscribers"][1]["username"]})
    result = sipkit.run_sipp(client, "register_reject", f"{PROXY}:5060",
                             accounts=[account(lab, 1, password="not-the-password")], trace_messages=True)
    assert (result.rc, result.successful) == (0, 1), result.summary()
    assert "SIP/2.0 200 OK" not in result.messages
    assert f"sip:{lab['subscribers'][1]['username']}@{CLIENT}" not in contacts(host)


def test_unknown_user_is_not_registered(host, client, lab):
    stranger = sipkit.Account("7999", lab["domain"], "whatever")
    result = sipkit.run_sipp(client, "register_reject", f"{PROXY}:5060", accounts=[stranger])
    assert (result.rc, result.successful) == (0, 1), result.summary()
    assert "sip:7999@" not in contacts(host)


def test_registration_is_written_back_to_the_location_table(lab):
    user = lab["subscribers"][0]["username"]
    # usrloc writes back on its timer (60 s by default)
    rows = wait_for(lambda: db(f"SELECT contact FROM location WHERE username='{user}'"), timeout=90, step=3)
    assert f"sip:{user}@{CLIENT}" in rows


# --- 2 and 8. subscriber to subscriber, through the relay -------------------------------

CALLEE_PORT = 5072


@pytest.fixture(scope="module")
def subscriber_call(host, client, lab):
    """1002 calls 1001, which is registered at a SIPp UAS on the client; the call is held 4 s."""
    callee, caller = account(lab, 0), account(lab, 1, callee=lab["subscribers"][0]["username"])
    # the callee's earlier contacts (case 1) go, so that only the UAS is reached
    mi(host, "ul_rm", {"table_name": "location", "aor": callee.user})
    reg = register(client, callee, local_port=CALLEE_PORT)
    assert reg.successful == 1, reg.summary()
    client.run(f"pkill -f '[s]ipp -sf .* -p {CALLEE_PORT}'; rm -rf /tmp/callee; mkdir -p /tmp/callee")
    client.check_output(f"cd /tmp/callee && (sipp -sf {sipkit.SCENARIO_DIR}/uas_media_server.xml -i {CLIENT} "
                        f"-p {CALLEE_PORT} -m 1 -nostdin -trace_msg -message_file messages.log "
                        f">/dev/null 2>&1 &) ; sleep 1")
    acc_before = int(db("SELECT COUNT(*) FROM acc"))
    outcome: dict = {}
    uac = threading.Thread(target=lambda: outcome.setdefault(
        "result", call(client, caller, hold_ms=4000, trace_messages=True)))
    uac.start()
    outcome["dialogs_during"] = wait_for(lambda: active_dialogs(host), timeout=8, step=0.5)
    uac.join(60)
    outcome["dialogs_after"] = wait_for(lambda: active_dialogs(host) == 0, timeout=5) and active_dialogs(host)
    outcome["callee_messages"] = client.run("cat /tmp/callee/messages.log").stdout
    outcome["acc_before"] = acc_before
    return outcome


def test_two_subscribers_call_each_other_through_the_proxy(subscriber_call):
    result = subscriber_call["result"]
    assert (result.rc, result.successful, result.failed) == (0, 1, 0), result.summary()
    for line in ("SIP/2.0 180 Ringing", "SIP/2.0 200 OK"):
        assert line in result.messages


def test_record_route_is_honoured(subscriber_call):
    invite = received(subscriber_call["callee_messages"], "INVITE")
    assert re.search(rf"Record-Route: <sip:{re.escape(PROXY)}[;:>]", invite), invite
    bye = received(subscriber_call["callee_messages"], "BYE")
    # the BYE went by way of the proxy, as the route set says
    assert re.search(rf"Via: SIP/2.0/UDP {re.escape(PROXY)}", bye), bye


def test_the_dialog_exists_during_the_call_and_ends_with_bye(subscriber_call):
    assert subscriber_call["dialogs_during"] >= 1
    assert subscriber_call["dialogs_after"] == 0


def test_the_answered_call_leaves_exactly_one_acc_row(subscriber_call):
    (call_id,) = call_ids(subscriber_call["result"])
    assert wait_for(lambda: cdrs([call_id])[call_id], timeout=10) == [("acc", "200")], cdrs([call_id])
    assert int(db("SELECT COUNT(*) FROM acc")) == subscriber_call["acc_before"] + 1


def test_the_callee_sees_the_relay_in_the_sdp(subscriber_call):
    invite = received(subscriber_call["callee_messages"], "INVITE")
    assert f"c=IN IP4 {RELAY}" in invite, invite
    assert f"c=IN IP4 {CLIENT}" not in invite and f"o=sipkit 53655765 2353687638 IN IP4 {CLIENT}" not in invite


# --- 3 and 4. unregistered numbers go to the media servers; failover ------------------

def test_calls_to_an_unregistered_number_reach_both_media_servers(client, lab):
    before = {name: sipkit.uas_invites(other(name), "media") for name in MEDIA}
    result = call(client, account(lab, 1), calls=4, rate=2, hold_ms=200)
    assert (result.rc, result.successful, result.failed) == (0, 4, 0), result.summary()
    time.sleep(2)  # SIPp flushes the UAS call log on its own schedule
    got = {name: sipkit.uas_invites(other(name), "media") - before[name] for name in MEDIA}
    assert got == dict.fromkeys(MEDIA, 2)  # round-robin (inventories/lab)


def test_failover_when_a_media_server_stops(host, client, lab, fs1_stopped):
    fs2 = other("stack-fs2")
    before = sipkit.uas_invites(fs2, "media")
    result = call(client, account(lab, 1), calls=4, rate=1, hold_ms=200, recv_timeout_ms=15000)
    assert (result.rc, result.successful, result.failed) == (0, 4, 0), result.summary()
    time.sleep(2)
    assert sipkit.uas_invites(fs2, "media") - before == 4
    # the OPTIONS probe marks fs1 down after the threshold
    state = wait_for(lambda: destinations(host)[MEDIA["stack-fs1"]]["state"] != "Active"
                     and destinations(host)[MEDIA["stack-fs1"]]["state"], timeout=40)
    assert state in ("Probing", "Inactive"), destinations(host)
    assert destinations(host)[MEDIA["stack-fs2"]]["state"] == "Active"
    fs1_stopped.check_output("systemctl start sipkit-uas-media.service")
    assert wait_for(lambda: destinations(host)[MEDIA["stack-fs1"]]["state"] == "Active", timeout=40), \
        destinations(host)


def test_each_call_attempt_leaves_one_cdr_while_a_media_server_stops_mid_run(host, client, lab):
    """Calls placed while fs1 is stopped under them. The INVITEs it no longer answers fail over to
    fs2 and are answered: one acc row each, and no missed_calls row for the failed first try. A call
    fs1 had already answered may lose its BYE (SIPp then counts it failed); it still has one CDR.

    A call fs1 stops on after its 180 waits for tm's fr_inv_timeout (30 s) before it fails over, so
    the phone waits longer than that: one that gave up silently (no CANCEL, as SIPp does on its
    receive timeout) would leave fs2's late 200 unacknowledged and its dialog open for hours."""
    fs1 = other("stack-fs1")
    stopper = threading.Timer(2.5, lambda: fs1.run("systemctl stop sipkit-uas-media.service"))
    stopper.start()
    try:
        result = call(client, account(lab, 1), calls=10, rate=2, hold_ms=200, recv_timeout_ms=40000,
                      trace_messages=True)
    finally:
        stopper.join()
        fs1.check_output("systemctl start sipkit-uas-media.service")
    assert result.created == 10 and result.successful >= 8, result.summary()
    ids = call_ids(result)
    assert len(ids) == 10
    rows = wait_for(lambda: (lambda r: r if all(r.values()) else None)(cdrs(ids)), timeout=15) or cdrs(ids)
    assert all(len(r) == 1 for r in rows.values()), rows
    assert sum(r == [("acc", "200")] for r in rows.values()) >= result.successful, rows
    # every call of the run has ended at the proxy too: none is left open for the next test
    assert wait_for(lambda: active_dialogs(host) == 0, timeout=10), active_dialogs(host)
    assert wait_for(lambda: destinations(host)[MEDIA["stack-fs1"]]["state"] == "Active", timeout=40), \
        destinations(host)


@pytest.fixture()
def relay_stopped(host):
    relay = other("stack-relay")
    relay.check_output("systemctl stop rtpengine-daemon")
    yield relay
    relay.check_output("systemctl start rtpengine-daemon")
    # the rtpengine module rechecks a relay it gave up on after 60 s; MI brings it back now
    for url in {d["url"] for d in rtpengine_nodes(host)}:
        mi(host, "rtpengine_enable", {"url": url, "enable": 1})


def rtpengine_nodes(host) -> list[dict]:
    """The relays the proxy's rtpengine module knows (MI rtpengine_show: [{Set, Nodes: [...]}])."""
    return [node for rtpe_set in mi(host, "rtpengine_show") for node in rtpe_set["Nodes"]]


def test_a_call_the_relay_cannot_anchor_is_refused_with_503_counted_and_one_cdr(host, client, lab, relay_stopped):
    """rtpengine dies: the offer fails, and the call gets 503 instead of going on with the phones' own
    SDP (unanchored media). The refusal is counted, logged with the Call-ID and leaves one missed CDR."""
    before = scrape(client)
    result = call(client, account(lab, 1), trace_messages=True, recv_timeout_ms=20000)
    assert "SIP/2.0 503 Media Relay Unavailable" in result.messages, result.messages[-3000:]
    assert result.failed == 1 and "200 OK" not in result.messages, result.summary()
    (call_id,) = call_ids(result)
    assert wait_for(lambda: cdrs([call_id])[call_id], timeout=10) == [("missed", "503")], cdrs([call_id])
    after = scrape(client)
    assert value(after, "opensips_relay_offers_refused") - value(before, "opensips_relay_offers_refused") == 1
    assert value(after, "opensips_calls_failed", code="503") - value(before, "opensips_calls_failed", code="503") == 1
    log = host.run(f"journalctl -u opensips --since '-2min' --no-pager | grep -c 'media relay refused the offer of INVITE {call_id}'")
    assert log.stdout.strip() == "1", log.stdout


def test_calls_are_anchored_again_once_the_relay_is_back(host, client, lab):
    result = call(client, account(lab, 1), trace_messages=True)
    assert (result.successful, result.failed) == (1, 0), result.summary()
    assert f"c=IN IP4 {RELAY}" in result.messages  # the 200 OK's SDP points at the relay
    assert all(n["disabled"] == 0 for n in rtpengine_nodes(host)), rtpengine_nodes(host)


# --- 5. trust -----------------------------------------------------------------------------

def test_untrusted_invite_without_credentials_gets_407(client, lab):
    result = call(client, account(lab, 1), scenario="uac_invite_challenged", trace_messages=True)
    assert (result.rc, result.successful) == (0, 1), result.summary()
    assert "SIP/2.0 407" in result.messages


# --- 6. CANCEL ----------------------------------------------------------------------------

def test_cancel_of_a_ringing_call_ends_with_487_and_one_missed_cdr(client, lab):
    result = call(client, account(lab, 1), scenario="uac_cancel", trace_messages=True)
    assert (result.rc, result.successful) == (0, 1), result.summary()
    assert "SIP/2.0 487" in result.messages
    (call_id,) = call_ids(result)
    assert wait_for(lambda: cdrs([call_id])[call_id], timeout=10) == [("missed", "487")], cdrs([call_id])


# --- 7. TLS and WSS -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def phone(host, client):
    ca = base64.b64encode(host.file("/etc/sip-tls/ca.pem").content).decode()
    client.check_output(f"echo {ca} | base64 -d > {CA}")
    return client


@pytest.mark.parametrize("transport, port", [("tls", 5061), ("wss", 7443)])
def test_register_over_tls_and_wss(host, phone, lab, transport, port):
    sub = lab["subscribers"][1]
    out = phone.run(f"sipkit-phone --transport {transport} --proxy {PROXY} --port {port} --ca {CA} "
                    f"--user {sub['username']} --domain {sub['domain']} --password '{sub['password']}'")
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.split("\n")[:2] == ["401 Unauthorized", "200 OK"], out.stdout
    transport_param = "transport=tls" if transport == "tls" else "transport=ws"
    assert transport_param in contacts(host)


# --- 10. monitoring: the prometheus endpoint on the proxy's internal address ------------

DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "..", "files", "grafana", "sip-edge-dashboard.json")
METRIC = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(from_host) -> dict[str, dict[frozenset, float]]:
    """The proxy's /metrics as Prometheus reads them: name -> {labels: value}."""
    text = from_host.check_output(f"curl -sf -m 5 http://{PROXY}:8888/metrics")
    series: dict[str, dict[frozenset, float]] = {}
    for line in text.splitlines():
        match = METRIC.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            series.setdefault(match["name"], {})[labels] = float(match["value"])
    assert series, text[:2000]
    return series


def value(series, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for lbl, v in series.get(name, {}).items() if wanted <= set(lbl))


def test_metrics_are_served_to_the_monitoring_host_only(client):
    # the lab's monitoring host (opensips_prometheus_sources) is stack-client
    assert "opensips_registered_users" in scrape(client)
    stranger = other("stack-client2").run(f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{PROXY}:8888/metrics")
    assert stranger.rc != 0 and stranger.stdout.strip() in ("", "000"), (stranger.rc, stranger.stdout)


def location_snapshot(host, client):
    """The metrics and the location table at one moment.

    Contacts left by earlier tests expire on their own while this module runs,
    so the table is read before and after the scrape and the pair is kept only
    when both reads agree (nothing expired in between)."""
    for _ in range(5):
        first = location(host, live_only=False)
        series = scrape(client)
        if location(host, live_only=False) == first:
            return series, first
        time.sleep(1)
    pytest.fail("the location table kept changing around every scrape")


def test_the_registration_gauge_rises_after_a_register(host, client, lab):
    acc = account(lab, 1)
    mi(host, "ul_rm", {"table_name": "location", "aor": acc.user})
    before, table_before = location_snapshot(host, client)
    # removed: nothing of it is live (what was written stays "deleted" until usrloc's timer)
    assert not [aor for aor in location(host) if aor.split("@")[0] == acc.user], table_before
    reg = register(client, acc)
    assert reg.successful == 1, reg.summary()
    after, table_after = location_snapshot(host, client)
    added = [aor for aor in table_after if aor.split("@")[0] == acc.user]
    assert len(added) == 1 and len(location(host).get(added[0], [])) == 1, table_after
    # the gauges are the table: one more user for this REGISTER (unless its removed record was
    # still in memory), less whatever earlier tests' contacts expired meanwhile
    expired = set(table_before) - set(table_after)
    new_user = 0 if added[0] in table_before else 1
    assert value(before, "opensips_registered_users") == len(table_before)
    assert value(after, "opensips_registered_users") == len(table_after) \
        == value(before, "opensips_registered_users") + new_user - len(expired)
    assert value(before, "opensips_location_contacts") == sum(map(len, table_before.values()))
    assert value(after, "opensips_location_contacts") == sum(map(len, table_after.values()))
    assert value(after, "opensips_accepted_regs") > value(before, "opensips_accepted_regs")


def test_call_metrics_count_calls_per_media_server_and_their_duration(client, lab):
    before = scrape(client)
    result = call(client, account(lab, 1), calls=2, rate=2, hold_ms=2200)
    assert (result.rc, result.successful, result.failed) == (0, 2, 0), result.summary()
    after = scrape(client)
    for uri in MEDIA.values():  # round-robin: one call each
        assert value(after, "opensips_calls_to_media_server", destination=uri) \
            - value(before, "opensips_calls_to_media_server", destination=uri) == 1, uri
        assert value(after, "opensips_media_server_up", destination=uri) == 1, uri
    assert value(after, "opensips_processed_dialogs") - value(before, "opensips_processed_dialogs") == 2
    assert value(after, "opensips_calls_ended_total") - value(before, "opensips_calls_ended_total") == 2
    # each call lasted 2.2 s from the 200 OK to the BYE; the dialog counts whole seconds
    assert value(after, "opensips_call_duration_seconds_total") \
        - value(before, "opensips_call_duration_seconds_total") >= 4
    assert value(after, "opensips_active_dialogs") == 0


@pytest.fixture()
def media_servers_disabled(host):
    for uri in MEDIA.values():
        mi(host, "ds_set_state", {"state": "i", "group": 1, "address": uri})
    yield
    for uri in MEDIA.values():
        mi(host, "ds_set_state", {"state": "a", "group": 1, "address": uri})


def test_media_server_state_and_failed_calls_by_code(host, client, lab, media_servers_disabled):
    # both media servers inactive: the call is refused with 503, counted by code
    before = scrape(client)
    result = call(client, account(lab, 1), trace_messages=True)
    assert "SIP/2.0 503" in result.messages, result.summary()
    (call_id,) = call_ids(result)
    # the proxy's own 503 is a CDR too: one missed_calls row with that code
    assert wait_for(lambda: cdrs([call_id])[call_id], timeout=10) == [("missed", "503")], cdrs([call_id])
    during = scrape(client)
    assert value(during, "opensips_calls_failed", code="503") - value(before, "opensips_calls_failed", code="503") == 1
    for uri in MEDIA.values():
        assert value(during, "opensips_media_server_up", destination=uri) == 0
    assert wait_for(lambda: value(scrape(client), "opensips_media_servers_active", set="1") == 0, timeout=15)
    for uri in MEDIA.values():
        mi(host, "ds_set_state", {"state": "a", "group": 1, "address": uri})
    after = scrape(client)
    assert all(value(after, "opensips_media_server_up", destination=uri) == 1 for uri in MEDIA.values())
    assert wait_for(lambda: value(scrape(client), "opensips_media_servers_active", set="1") == 2, timeout=15)


def test_every_series_of_the_grafana_dashboard_is_exported(client):
    with open(DASHBOARD, encoding="utf-8") as fh:
        dashboard = json.load(fh)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = set(re.findall(r"\bopensips_[A-Za-z0-9_]+", " ".join(exprs)))
    exported = set(scrape(client))
    assert len(wanted) > 15
    raw = client.check_output(f"curl -sf -m 5 http://{PROXY}:8888/metrics")
    assert wanted <= exported, (sorted(wanted - exported),
                                [x for x in raw.splitlines() if x.startswith("#") or "calls_" in x or "sipedge" in x])


# --- 9. pike (last: it blocks stack-client2 for a while) -------------------------------

def test_the_load_generator_is_not_counted_by_pike(client):
    # stack-client is in opensips_pike_exempt_networks (make bench): 300 requests
    # at 150/s, twice pike's density (150 per 2 s), all answered
    result = sipkit.run_sipp(client, "uac_options", f"{PROXY}:5060", calls=300, rate=150, recv_timeout_ms=2000)
    assert (result.successful, result.failed) == (300, 0), result.summary()


def test_a_flood_is_blocked_while_another_source_still_registers(host, client, lab):
    flood: dict = {}
    flooder = threading.Thread(target=lambda: flood.setdefault("result", sipkit.run_sipp(
        other("stack-client2"), "uac_options", f"{PROXY}:5060", calls=1200, rate=400, recv_timeout_ms=2000)))
    flooder.start()
    time.sleep(1.5)
    during = register(client, account(lab, 0))
    flooder.join(120)
    result = flood["result"]
    assert during.successful == 1, during.summary()
    assert result.created == 1200, result.summary()
    # 400/s against 150 per 2 s: most requests after the threshold got no answer
    assert result.failed > 600, result.summary()
    log = host.run(f"journalctl -u opensips --since '-5min' --no-pager | grep -c 'pike: flood from {CLIENT2}'")
    assert int(log.stdout.strip() or 0) > 0
