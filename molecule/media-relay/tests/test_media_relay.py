"""The rtpengine role in userspace mode: a real rtpengine, driven over ng from the proxy, relaying real RTP."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from opensips_checks import other, real_parser_check, recap_changed, rendered_config, run_playbook

testinfra_hosts = ["ansible://relay-relay1"]

SCENARIO = Path(__file__).resolve().parents[1]
RELAY_IP, PROXY_IP, OUTSIDE_IP = "10.210.50.30", "10.210.50.10", "10.210.50.100"
ADVERTISED = "203.0.113.30"
NG_PORT = 2223
PORT_MIN, PORT_MAX = 31000, 31999
CONFIG = "/etc/rtpengine/rtpengine.conf"
EXPORTS = "/var/lib/sipedge-test/rtpengine-exports.json"
SERVICE = "rtpengine-daemon"

# A minimal ng client (bencode over UDP) run with the target's python3.
NG_CLIENT = r'''
import json, socket, struct, sys, time

def benc(x):
    if isinstance(x, dict):
        return b"d" + b"".join(benc(k) + benc(v) for k, v in sorted(x.items())) + b"e"
    if isinstance(x, list):
        return b"l" + b"".join(benc(i) for i in x) + b"e"
    if isinstance(x, int):
        return b"i%de" % x
    x = x.encode() if isinstance(x, str) else x
    return b"%d:%s" % (len(x), x)

def bdec(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c in (b"l", b"d"):
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            item, i = bdec(data, i)
            items.append(item)
        return (dict(zip(items[::2], items[1::2])) if c == b"d" else items), i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n].decode(), colon + 1 + n

RELAY = (sys.argv[1], int(sys.argv[2]))
ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ctl.settimeout(3)

def ng(cookie, command):
    ctl.sendto(cookie.encode() + b" " + benc(command), RELAY)
    data, src = ctl.recvfrom(65535)
    head, _, body = data.partition(b" ")
    assert head.decode() == cookie, data
    return bdec(body)[0]

def sdp(ip, port):
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=sipedge test\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
'''

PING = r'''
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(sys.argv[3].encode() + b" d7:command4:pinge", RELAY)
data, src = s.recvfrom(65535)
print(json.dumps({"reply": data.decode(), "source": list(src)}))
'''

OFFER = r'''
call = sys.argv[3]
offer = ng("offer-1", {"command": "offer", "call-id": call, "from-tag": "caller", "sdp": sdp(sys.argv[4], 41000)})
delete = ng("delete-1", {"command": "delete", "call-id": call, "from-tag": "caller"})
print(json.dumps({"offer": offer, "delete": delete}))
'''

# The proxy side of a call: offer for the outside caller, answer for a callee
# on the proxy, then RTP from the callee to the relay until the caller's echo
# comes back through the relay.
CALLEE = r'''
call, caller_ip, callee_ip = sys.argv[3], sys.argv[4], sys.argv[5]
callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
callee.bind((callee_ip, 41002))
callee.settimeout(0.2)
offer = ng("o", {"command": "offer", "call-id": call, "from-tag": "caller", "sdp": sdp(caller_ip, 41000)})
answer = ng("a", {"command": "answer", "call-id": call, "from-tag": "caller", "to-tag": "callee",
                  "sdp": sdp(callee_ip, 41002)})
port_for_callee = int(offer["sdp"].split("m=audio ")[1].split()[0])
payload = bytes(range(160))
received, sent, deadline = None, 0, time.time() + 15
while received is None and time.time() < deadline:
    callee.sendto(struct.pack("!BBHII", 0x80, 0, sent, sent * 160, 0x5ED6E) + payload, (RELAY[0], port_for_callee))
    sent += 1
    try:
        data, src = callee.recvfrom(2048)
        if data[12:] == payload:
            received = {"source": list(src), "length": len(data)}
    except socket.timeout:
        pass
delete = ng("d", {"command": "delete", "call-id": call, "from-tag": "caller"})
print(json.dumps({"offer": offer, "answer": answer, "received": received, "sent": sent, "delete": delete.get("result")}))
'''

# The outside caller: echo the first RTP packet with a payload back to where it came from.
ECHO = r'''
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 41000))
s.settimeout(25)
while True:
    data, src = s.recvfrom(2048)
    if len(data) > 12:
        break
for _ in range(10):
    s.sendto(data, src)
    time.sleep(0.1)
print(json.dumps({"source": list(src), "length": len(data), "payload": data[12:].hex()}))
'''


def python(host, script, *args):
    """Run ``script`` with the host's python3 and return its JSON output."""
    b64 = base64.b64encode(script.encode()).decode()
    out = host.run(f"echo {b64} | base64 -d | python3 - {' '.join(shlex.quote(str(a)) for a in args)}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def ng_client(script, *args):
    """An ng client script run on the proxy, the relay's internal peer."""
    return python(other("relay-proxy"), NG_CLIENT + script, RELAY_IP, NG_PORT, *args)


def sdp_lines(sdp, prefix):
    return [line[len(prefix):].strip() for line in sdp.splitlines() if line.startswith(prefix)]


def config_options(host):
    """The [rtpengine] options of the rendered file."""
    options = {}
    for line in host.file(CONFIG).content_string.splitlines():
        match = re.match(r"^\s*([a-z-]+)\s*=\s*(.*?)\s*$", line)
        if match:
            options[match.group(1)] = match.group(2)
    return options


def main_pid(host):
    return host.check_output(f"systemctl show -p MainPID --value {SERVICE}")


def converge_relay(*extra_vars: str) -> subprocess.CompletedProcess:
    """The scenario's converge on the relay, as an operator changing inventory would."""
    return run_playbook(SCENARIO / "converge.yml", "relay-relay1", *extra_vars)


# --- the service ----------------------------------------------------------------------

def test_service_is_running_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_distro_package_is_installed(host):
    assert host.package("rtpengine-daemon").is_installed
    assert host.package("rtpengine-daemon").version.startswith("10.5.")


def test_ng_listens_on_the_internal_address_only(host):
    assert host.socket(f"udp://{RELAY_IP}:{NG_PORT}").is_listening
    assert not host.socket(f"udp://0.0.0.0:{NG_PORT}").is_listening
    ng_sockets = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{NG_PORT}")]
    assert ng_sockets == [f"udp://{RELAY_IP}:{NG_PORT}"]


def test_cli_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9900").is_listening
    assert not host.socket("tcp://0.0.0.0:9900").is_listening


def test_forwarding_is_userspace(host):
    options = config_options(host)
    assert options["table"] == "-1"
    assert options["log-level"] == "6"  # the scenario's: "Startup complete" is an info line
    assert "MANAGE_IPTABLES=no" in host.file("/etc/default/rtpengine-daemon").content_string.splitlines()
    # The log of the running instance: started, and never tried the kernel module.
    invocation = host.check_output(f"systemctl show -p InvocationID --value {SERVICE}")
    log = host.check_output(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}")
    assert "Startup complete" in log
    assert "FAILED TO CREATE KERNEL TABLE" not in log
    assert "KERNEL FORWARDING DISABLED" not in log


def test_running_daemon_uses_the_configured_interface_and_range(host):
    out = host.check_output("rtpengine-ctl list interfaces")
    assert f"Interface 'pub' address '{RELAY_IP}'" in out
    assert re.search(rf"Port range:\s*{PORT_MIN}\s*-\s*{PORT_MAX}", out), out


def test_config_renders_the_interface_with_its_advertised_address(host):
    options = config_options(host)
    assert options["interface"] == f"pub/{RELAY_IP}!{ADVERTISED}"
    assert options["listen-ng"] == f"{RELAY_IP}:{NG_PORT}"
    assert (options["port-min"], options["port-max"]) == (str(PORT_MIN), str(PORT_MAX))
    assert options["delete-delay"] == "30"  # the range was checked against it
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "root", 0o644)


# --- the ng protocol from the proxy --------------------------------------------------------

def test_ng_ping_from_the_proxy_gets_pong():
    result = ng_client(PING, "sipedge-ping-42")
    assert result["reply"] == "sipedge-ping-42 d6:result4:ponge"
    assert result["source"] == [RELAY_IP, NG_PORT]


def test_ng_offer_returns_the_advertised_address_and_a_port_in_range():
    result = ng_client(OFFER, "sipedge-offer-1", OUTSIDE_IP)
    offer = result["offer"]
    assert offer["result"] == "ok", offer
    sdp = offer["sdp"]
    assert sdp_lines(sdp, "c=") == [f"IN IP4 {ADVERTISED}"]
    media = sdp_lines(sdp, "m=audio ")
    assert len(media) == 1
    port = int(media[0].split()[0])
    assert PORT_MIN <= port <= PORT_MAX
    assert result["delete"]["result"] == "ok"


def test_rtp_is_relayed_both_ways_in_userspace():
    """The outside caller and the proxy's callee exchange RTP only through the relay's ports."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        echo = pool.submit(python, other("relay-outside"), ECHO, OUTSIDE_IP)
        call = ng_client(CALLEE, "sipedge-rtp-1", OUTSIDE_IP, PROXY_IP)
        caller = echo.result(timeout=60)
    port_for_callee = int(sdp_lines(call["offer"]["sdp"], "m=audio ")[0].split()[0])
    port_for_caller = int(sdp_lines(call["answer"]["sdp"], "m=audio ")[0].split()[0])
    assert PORT_MIN <= port_for_callee <= PORT_MAX and PORT_MIN <= port_for_caller <= PORT_MAX
    assert sdp_lines(call["answer"]["sdp"], "c=") == [f"IN IP4 {ADVERTISED}"]
    # the caller got the callee's packet from the relay's caller-side port ...
    assert caller["source"] == [RELAY_IP, port_for_caller]
    assert caller["payload"] == bytes(range(160)).hex()
    # ... and its echo reached the callee from the relay's callee-side port
    assert call["received"] == {"source": [RELAY_IP, port_for_callee], "length": 172}, call
    assert call["delete"] == "ok"


# --- exported variables ----------------------------------------------------------------

def exports(host):
    return json.loads(host.file(EXPORTS).content_string)


def test_exported_ng_socket_is_the_listening_socket(host):
    assert exports(host)["rtpengine_ng_socket"] == f"udp:{RELAY_IP}:{NG_PORT}"


def test_exported_rtp_range_equals_the_rendered_range(host):
    options = config_options(host)
    rules = exports(host)["rtpengine_firewall_rules"]
    rtp = [r for r in rules if "-" in str(r["port"])]
    assert len(rtp) == 1
    assert rtp[0]["proto"] == "udp"
    assert rtp[0]["sources"] == []  # from anywhere
    assert rtp[0]["port"] == f"{options['port-min']}-{options['port-max']}"


def test_exported_ng_rule_admits_only_the_proxies(host):
    rules = exports(host)["rtpengine_firewall_rules"]
    ng = [r for r in rules if str(r["port"]) == str(NG_PORT)]
    assert len(ng) == 1
    assert ng[0]["proto"] == "udp"
    assert ng[0]["sources"] == [PROXY_IP]
    assert len(rules) == 2


# --- inventory changes and bad input --------------------------------------------------------

def test_changed_port_range_restarts_the_daemon_then_converges(host):
    # 100 ports hold 4 x (10 + 0 x 30) = 40
    narrower = json.dumps({"rtpengine_port_min": 32000, "rtpengine_port_max": 32099,
                           "rtpengine_expected_concurrent_calls": 10, "rtpengine_expected_calls_per_second": 0})
    pid = main_pid(host)
    try:
        assert recap_changed(converge_relay(narrower).stdout, "relay-relay1") >= 1
        assert (config_options(host)["port-min"], config_options(host)["port-max"]) == ("32000", "32099")
        assert main_pid(host) != pid  # restarted: rtpengine cannot reload its ports
        port = int(sdp_lines(ng_client(OFFER, "sipedge-offer-2", OUTSIDE_IP)["offer"]["sdp"], "m=audio ")[0].split()[0])
        assert 32000 <= port <= 32099
        assert [r["port"] for r in exports(host)["rtpengine_firewall_rules"]][0] == "32000-32099"
        assert recap_changed(converge_relay(narrower).stdout, "relay-relay1") == 0
    finally:
        assert recap_changed(converge_relay().stdout, "relay-relay1") >= 1
    assert (config_options(host)["port-min"], config_options(host)["port-max"]) == (str(PORT_MIN), str(PORT_MAX))
    port = int(sdp_lines(ng_client(OFFER, "sipedge-offer-3", OUTSIDE_IP)["offer"]["sdp"], "m=audio ")[0].split()[0])
    assert PORT_MIN <= port <= PORT_MAX


# Each case: the override, and the failure message (whitespace-normalised) that
# names the variable, from the role's own assert or its argument spec.
@pytest.mark.parametrize("overrides, message", [
    ({"rtpengine_port_min": 40000, "rtpengine_port_max": 30000},
     "rtpengine_port_min / rtpengine_port_max must be a range inside 1024-65535 with "
     "rtpengine_port_min < rtpengine_port_max (got 40000-30000)"),
    ({"rtpengine_port_min": 80, "rtpengine_port_max": 1000}, "rtpengine_port_max (got 80-1000)"),
    ({"rtpengine_port_min": 30000, "rtpengine_port_max": 70000}, "rtpengine_port_max (got 30000-70000)"),
    ({"rtpengine_expected_concurrent_calls": 101},
     "(31000-31999, 1000 ports) cannot hold the expected calls: rtpengine_ports_per_call 4 x "
     "(rtpengine_expected_concurrent_calls 101 + rtpengine_expected_calls_per_second 5 x rtpengine_delete_delay 30) "
     "= 1004 ports"),
    ({"rtpengine_ng_address": "8.8.8.8"},
     "rtpengine_ng_address 8.8.8.8 is a public address: the ng protocol has no authentication, so it must be "
     "loopback, RFC 1918 or IPv6 ULA. Set rtpengine_ng_allow_public: true"),
    ({"rtpengine_ng_address": "relay.example.net"}, "rtpengine_ng_address must be an IP address (got relay.example.net)"),
    ({"rtpengine_ng_port": 31500}, "rtpengine_ng_port 1-65535 outside the RTP range 31000-31999 (got 31500)"),
    ({"rtpengine_interfaces": [{"name": "pub", "address": "not-an-address"}]},
     "'address': 'not-an-address'} needs a name of letters, digits"),
    ({"rtpengine_interfaces": [{"name": "pub"}]}, "missing required arguments: address found in rtpengine_interfaces"),
], ids=["reversed-range", "privileged-range", "range-above-65535", "range-too-small-for-the-calls", "public-ng-address", "ng-hostname",
        "ng-port-inside-rtp-range", "bad-interface-address", "interface-without-address"])
def test_bad_input_fails_before_any_change(host, overrides, message):
    before = host.file(CONFIG).sha256sum
    pid = main_pid(host)
    run = converge_relay(json.dumps(overrides))
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert message in output, output[-3000:]
    # it failed in the validation, before the first task that changes anything
    assert "Install the rtpengine packages" not in output
    assert "Render rtpengine.conf" not in output
    assert host.file(CONFIG).sha256sum == before
    assert main_pid(host) == pid


def test_expected_calls_beyond_the_relays_open_file_limit_fail_before_any_change(host):
    # rtpengine opens one socket per port: a range that holds the calls is not
    # enough when the daemon may not open that many files ("Too many open
    # files", then "Ran out of ports", found by make bench at 720 calls/s).
    pid = main_pid(host)
    limits = host.file(f"/proc/{pid}/limits").content_string
    nofile = re.search(r"^Max open files\s+(\S+)", limits, re.M).group(1)
    calls = int(nofile) // 4 + 1 if nofile != "unlimited" else 0  # 4 ports each: more than the limit allows
    if not calls or 10000 + 4 * calls - 1 > 65535:
        pytest.skip(f"SKIPPED: the relay may open {nofile} files, more than a port range above 10000 can use")
    # a range that holds exactly the expected calls, so only the file limit can refuse them
    overrides = {"rtpengine_port_min": 10000, "rtpengine_port_max": 10000 + 4 * calls - 1,
                 "rtpengine_expected_concurrent_calls": calls, "rtpengine_expected_calls_per_second": 0}
    before = host.file(CONFIG).sha256sum
    run = converge_relay(json.dumps(overrides))
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert (f"rtpengine may open {nofile} files (its open-file limit on relay-relay1), but the expected calls hold "
            f"{4 * calls} ports, one socket each") in output, output[-3000:]
    assert "rtpengine_expected_concurrent_calls " + str(calls) in output
    assert "Render rtpengine.conf" not in output
    assert host.file(CONFIG).sha256sum == before
    assert main_pid(host) == pid


@pytest.fixture(scope="module")
def rendered_cfg():
    return rendered_config("relay-proxy")


def test_the_proxy_config_uses_the_exported_ng_socket(rendered_cfg):
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:10.210.50.30:2223")' in rendered_cfg.read_text()


def test_the_proxy_config_passes_the_real_parser(rendered_cfg):
    rc, output = real_parser_check(rendered_cfg)
    assert rc == 0, output
