"""The edge between its two networks: phones on stack-public, media servers and the database on
stack-core, the proxy and the relay on both (issue: a production-shaped lab).

- nothing on the public side reaches a core address, neither directly nor by routing the core
  through the proxy; a media server's address forged from the public side is not trusted;
- the media servers see the proxy's internal address and the relay's internal address, the phones
  only the public ones;
- a call in each direction completes: phone to media server (the phone hangs up) and media server
  to phone (the media server hangs up).
"""

from __future__ import annotations

import re
import shlex
import threading
import time

import pytest

import sipkit
from opensips_checks import mi, other
from stack import CLIENT, DB, FS1, FS2, PROXY, PROXY_CORE, RELAY, RELAY_CORE, core
from test_attacks import raw  # the attack module's raw-SIP runner (sipraw.py on a host)
from test_full_stack import account, call, call_ids, cdrs, received, register, wait_for

testinfra_hosts = ["ansible://stack-proxy"]

CORE_NET = re.sub(r"\.\d+$", ".0/24", PROXY_CORE)


def options(target: str) -> str:
    return (f"OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}}{{n}};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@lab.sipedge.test>;tag=p{n}\r\n"
            f"To: <sip:{target}>\r\nCall-ID: two-net-{{n}}@{{ip}}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def sip_answers(host, target: str, port: int = 5060) -> bool:
    return raw(host, action="send", proxy=target, port=port, wait=2, messages=[options(target)])["codes"] != []


def tcp_open(host, address: str, port: int) -> bool:
    return host.run(f"timeout 3 bash -c '</dev/tcp/{address}/{port}'").rc == 0


def ng_answers(host, address: str, port: int = 2223) -> bool:
    """An rtpengine ng `ping` (bencoded, with a cookie): True when `pong` comes back."""
    probe = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); "
             f"s.sendto(b'c1 d7:command4:pinge', ('{address}', {port}));\n"
             "try: print(s.recv(200).decode())\nexcept OSError: print('no answer')")
    return "pong" in host.run(f"python3 -c {shlex.quote(probe)}").stdout


def counter(host, chain: str, comment: str) -> int:
    listing = host.check_output(f"nft list chain inet sipedge {chain}")
    match = re.search(rf"counter packets (\d+) bytes \d+ .*comment \"{re.escape(comment)}\"", listing)
    assert match, listing
    return int(match.group(1))


def requests_received(host) -> int:
    (value,) = mi(host, "get_statistics", {"statistics": ["rcv_requests"]}).values()
    return int(value)


def sdp(message: str) -> str:
    """The body of a SIP message (SIPp's trace), where the media addresses are."""
    return re.split(r"\r?\n\r?\n", message, maxsplit=1)[1]


@pytest.fixture(scope="module")
def phone():
    return other("stack-client")


@pytest.fixture(scope="module")
def attacker():
    return other("stack-client2")


# --- 1. the public side reaches no core address -------------------------------------------

def test_a_phone_reaches_the_public_sides_only(host, phone):
    # the proxy's public socket answers the phone; the same probes from the proxy show that the
    # core services are up, so a silence from the phone's side is the network's doing
    assert sip_answers(phone, PROXY)
    assert tcp_open(host, DB, 3306) and ng_answers(host, RELAY_CORE) and sip_answers(host, FS1)
    assert not tcp_open(phone, DB, 3306), "MariaDB answered a phone"
    assert not ng_answers(phone, RELAY_CORE), "the relay's ng control answered a phone"
    assert not sip_answers(phone, FS1) and not sip_answers(phone, FS2), "a media server answered a phone"
    assert not sip_answers(phone, PROXY_CORE), "the proxy's core socket answered a phone"


@pytest.fixture()
def core_routed_through_the_proxy(attacker):
    """The attacker routes the core network through the proxy's public address (next hop on its
    own network), as any host on the proxy's public segment could."""
    attacker.check_output(f"ip route replace {CORE_NET} via {PROXY}")
    yield attacker
    attacker.run(f"ip route del {CORE_NET}")


def test_routing_the_core_through_the_proxy_reaches_nothing(host, core_routed_through_the_proxy):
    attacker = core_routed_through_the_proxy
    other_interface = counter(host, "input", "address of another interface")
    forwarded = counter(host, "forward", "forwarding refused")
    # the proxy's own core socket, from its public interface: dropped (strong host model)
    assert not sip_answers(attacker, PROXY_CORE)
    assert counter(host, "input", "address of another interface") > other_interface
    # through the proxy into the core: it forwards nothing
    assert not sip_answers(attacker, FS1)
    assert not tcp_open(attacker, DB, 3306)
    assert counter(host, "forward", "forwarding refused") > forwarded
    # the public socket still answers the same host
    assert sip_answers(attacker, PROXY)


def trunk_invite(lab) -> str:
    return (f"INVITE sip:{lab['callee']}@{lab['domain']} SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch={{branch}}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:trunk@{lab['domain']}>;tag=spoof\r\nTo: <sip:{lab['callee']}@{lab['domain']}>\r\n"
            "Call-ID: spoofed-source-{n}@{ip}\r\nCSeq: 1 INVITE\r\nContact: <sip:trunk@{local}>\r\n"
            "Content-Length: 0\r\n\r\n")


def relayed_to_media_servers(call_id_part: str) -> int:
    """INVITEs whose Call-ID contains ``call_id_part`` that the media servers' stand-ins logged."""
    return sum(int(other(name).run(f"grep -c '^INVITE .*{call_id_part}' {sipkit.STATE_DIR}/media/calls.log")
                   .stdout.strip() or 0) for name in ("stack-fs1", "stack-fs2"))


def test_a_media_server_address_forged_from_the_public_side_is_not_trusted(host, attacker, lab):
    """A trunk INVITE (a media server is trusted: no challenge) sent from the phones' side with a media
    server's source address and port is never relayed to the media servers. On this lab's Docker host
    the bridge even rewrites such a source (the host masquerades the core subnet), so OpenSIPS sees an
    untrusted stranger and challenges it; on a real network the proxy's reverse-path filter drops it
    (next test), and OpenSIPS trusts the media servers on its core socket only (address group 2)."""
    sent = raw(attacker, action="spoof", source={"ip": FS1, "port": 5060}, messages=[trunk_invite(lab)] * 3, pace=0.2)
    assert sent["sent"] == 3
    time.sleep(2)
    assert relayed_to_media_servers("spoofed-source") == 0
    # the same INVITE from the attacker's own address is challenged: the path is open, trust is not
    seen = raw(attacker, action="send", wait=2, messages=[trunk_invite(lab)])
    assert seen["codes"] == [407], seen["codes"]
    assert relayed_to_media_servers("spoofed-source") == 0


REMOTE_CORE = re.sub(r"\.\d+\.\d+$", ".99.0/24", PROXY_CORE)  # a core subnet behind the core router


@pytest.fixture()
def remote_core_subnet(host):
    """A core subnet the proxy reaches through the core network's router (a second media site): an
    address the lab's bridges do not know, so nothing but the proxy's own firewall judges it."""
    gateway = re.sub(r"\.\d+$", ".1", PROXY_CORE)
    host.check_output(f"ip route replace {REMOTE_CORE} via {gateway}")
    yield REMOTE_CORE.replace(".0/24", ".41")
    host.run(f"ip route del {REMOTE_CORE}")


def test_a_core_source_forged_from_the_public_side_is_dropped_by_the_proxy(host, attacker, lab, remote_core_subnet):
    spoofed = counter(host, "rpfilter", "spoofed source")
    before = requests_received(host)
    raw(attacker, action="spoof", source={"ip": remote_core_subnet, "port": 5060}, messages=[trunk_invite(lab)] * 3,
        pace=0.2)
    time.sleep(1)
    assert counter(host, "rpfilter", "spoofed source") >= spoofed + 3
    assert requests_received(host) == before, "OpenSIPS received a request with a forged core source"


# --- 2. each side sees only its own addresses ----------------------------------------------

MEDIA_SERVERS = ("stack-fs1", "stack-fs2")


@pytest.fixture(scope="module")
def traced_media_servers():
    """Both media servers' stand-ins replaced by traced ones (same port), restored afterwards."""
    hosts = {name: other(name) for name in MEDIA_SERVERS}
    for name, fs in hosts.items():
        fs.check_output("systemctl stop sipkit-uas-media.service; rm -rf /tmp/traced; mkdir -p /tmp/traced")
        fs.check_output(f"cd /tmp/traced && (sipp -sf {sipkit.SCENARIO_DIR}/uas_media_server.xml -i {core(name)} "
                        "-p 5060 -nostdin -trace_msg -message_file messages.log >/dev/null 2>&1 &); sleep 1")
    yield hosts
    for fs in hosts.values():
        fs.run("pkill -f '[s]ipp -sf .*uas_media_server.xml .*-trace_msg'; sleep 1; "
               "systemctl start sipkit-uas-media.service")


@pytest.fixture(scope="module")
def phone_to_media_server(host, phone, lab, traced_media_servers):
    """Two calls from a phone to the media servers (round-robin: one each); the phone hangs up."""
    result = call(phone, account(lab, 1), calls=2, rate=2, hold_ms=1000, trace_messages=True)
    time.sleep(2)
    logs = {name: fs.run("cat /tmp/traced/messages.log").stdout for name, fs in traced_media_servers.items()}
    return {"result": result, "logs": logs}


def test_a_phone_calls_a_media_server_and_hangs_up(host, phone_to_media_server):
    result = phone_to_media_server["result"]
    assert (result.rc, result.successful, result.failed) == (0, 2, 0), result.summary()
    for log in phone_to_media_server["logs"].values():
        received(log, "BYE")  # the phone's BYE reached both media servers
    ids = call_ids(result)
    assert wait_for(lambda: all(v == [("acc", "200")] for v in cdrs(ids).values()), timeout=10), cdrs(ids)


def test_the_media_servers_see_only_core_addresses(host, phone_to_media_server):
    for name, log in phone_to_media_server["logs"].items():
        invite = received(log, "INVITE")
        top_via = re.search(r"^Via: *(.*)$", invite, re.M).group(1)
        assert f"SIP/2.0/UDP {PROXY_CORE}" in top_via, (name, invite)
        # double Record-Route: the core side first (toward the media server), then the public side
        routes = re.findall(r"^Record-Route: *(.*)$", invite, re.M)
        assert re.search(rf"<sip:{re.escape(PROXY_CORE)}[;:>]", routes[0]) and PROXY in " ".join(routes), (name, routes)
        offer = sdp(invite)
        assert f"c=IN IP4 {RELAY_CORE}" in offer, (name, invite)
        assert CLIENT not in offer and RELAY not in offer, (name, invite)
        bye = received(log, "BYE")
        assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(PROXY_CORE)}", bye, re.M), (name, bye)


def test_the_phone_sees_only_public_addresses(host, phone_to_media_server):
    answer = sdp(received(phone_to_media_server["result"].messages, "SIP/2.0 200"))
    assert f"c=IN IP4 {RELAY}" in answer, answer
    for address in (RELAY_CORE, PROXY_CORE, FS1, FS2):
        assert address not in answer, (address, answer)


CALLEE_PORT = 5074


@pytest.fixture(scope="module")
def media_server_to_phone(host, phone, lab, traced_media_servers):
    """The first subscriber, registered at a traced UAS on the phone, is called by a media server
    (trusted, from its SIP port) through the proxy's core socket; the media server hangs up."""
    callee = account(lab, 0)
    mi(host, "ul_rm", {"table_name": "location", "aor": callee.user})
    reg = register(phone, callee, local_port=CALLEE_PORT)
    assert reg.successful == 1, reg.summary()
    phone.run(f"pkill -f '[s]ipp -sf .* -p {CALLEE_PORT}'; rm -rf /tmp/callee3; mkdir -p /tmp/callee3")
    phone.check_output(f"cd /tmp/callee3 && (sipp -sf {sipkit.SCENARIO_DIR}/uas_media_server.xml -i {CLIENT} "
                       f"-p {CALLEE_PORT} -m 1 -nostdin -trace_msg -message_file messages.log >/dev/null 2>&1 &); sleep 1")
    fs1 = traced_media_servers["stack-fs1"]
    # the traced stand-in on fs1 gives up its port 5060: the call must come from the trusted port
    fs1.run("pkill -f '[s]ipp -sf .*uas_media_server.xml .*-trace_msg'; sleep 1")
    outcome: dict = {}
    uac = threading.Thread(target=lambda: outcome.setdefault("result", sipkit.run_sipp(
        fs1, "uac_call", f"{PROXY_CORE}:5060", local_ip=FS1, local_port=5060, hold_ms=2000, trace_messages=True,
        accounts=[sipkit.Account("9000", lab["domain"], "none", callee.user)])))
    uac.start()
    uac.join(60)
    time.sleep(1)
    return {"result": outcome["result"], "callee": phone.run("cat /tmp/callee3/messages.log").stdout}


def test_a_media_server_calls_a_phone_and_hangs_up(host, media_server_to_phone):
    result = media_server_to_phone["result"]
    assert (result.rc, result.successful, result.failed) == (0, 1, 0), result.summary()
    assert "SIP/2.0 407" not in result.messages, "a media server from its SIP port is trusted"
    bye = received(media_server_to_phone["callee"], "BYE")
    assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(PROXY)}", bye, re.M), bye
    assert wait_for(lambda: int(mi(host, "get_statistics", {"statistics": ["active_dialogs"]})
                                ["dialog:active_dialogs"]) == 0, timeout=10)


def test_each_side_of_the_reverse_call_sees_its_own_addresses(host, media_server_to_phone):
    invite = received(media_server_to_phone["callee"], "INVITE")
    assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(PROXY)}[:;]", invite, re.M), invite
    offer = sdp(invite)
    assert f"c=IN IP4 {RELAY}" in offer and RELAY_CORE not in offer and FS1 not in offer, invite
    answer = sdp(received(media_server_to_phone["result"].messages, "SIP/2.0 200"))
    assert f"c=IN IP4 {RELAY_CORE}" in answer and CLIENT not in answer and RELAY not in answer, answer
