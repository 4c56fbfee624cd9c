"""RTPProxy from the vendor image, answering its control protocol on the internal address."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from opensips_checks import other, real_parser_check, rendered_config, run_playbook

testinfra_hosts = ["ansible://rtpp-relay"]

SCENARIO = Path(__file__).resolve().parents[1]
RELAY = "10.210.80.30"

CONTROL = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(sys.argv[1].encode(), ("%s", 7722))
print(s.recvfrom(4096)[0].decode().strip())
""" % RELAY


def control(command: str) -> str:
    """One control-protocol exchange from the proxy host."""
    return other("rtpp-proxy").check_output(f"python3 -c '{CONTROL}' {json.dumps(command)}")


def converge_relay(*extra_vars: str) -> subprocess.CompletedProcess:
    return run_playbook(SCENARIO / "converge.yml", "rtpp-relay", *extra_vars)


def test_container_runs_with_host_networking(host):
    state = json.loads(host.check_output("docker inspect rtpproxy"))[0]
    assert state["State"]["Running"] and state["HostConfig"]["NetworkMode"] == "host"
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_control_socket_is_on_the_internal_address_only(host):
    assert host.socket(f"udp://{RELAY}:7722").is_listening
    assert not host.socket("udp://0.0.0.0:7722").is_listening


def test_answers_the_control_protocol_version_query():
    assert control("c1 V") == "c1 20040107"
    assert control("c2 VF 20040107") == "c2 1"  # capability: basic RTP proxy functionality


def test_offer_allocates_a_port_in_the_range_and_advertises_the_nat_address():
    reply = control("c3 U test-call-1 10.210.80.10 40000 from-tag-1").split()
    assert reply[0] == "c3"
    assert 35000 <= int(reply[1]) <= 35999, reply
    assert "198.51.100.30" in reply, reply
    control("c4 D test-call-1 from-tag-1")


def test_exported_socket_and_firewall_range_match_the_running_options(host):
    exports = json.loads(host.file("/root/rtpproxy-exports.json").content_string)
    assert exports["socket"] == f"udp:{RELAY}:7722" and exports["bridge"] is False
    args = json.loads(host.check_output("docker inspect rtpproxy"))[0]["Args"]
    rtp = next(r for r in exports["rules"] if r["name"] == "rtpproxy RTP")
    assert rtp["port"] == f"{args[args.index('-m') + 1]}-{args[args.index('-M') + 1]}" == "35000-35999"
    ctrl = next(r for r in exports["rules"] if r["name"] == "rtpproxy control (proxies)")
    assert ctrl["sources"] == ["10.210.80.10"]


@pytest.mark.parametrize("extra, variable", [
    ('{"rtpproxy_port_min": 36000, "rtpproxy_port_max": 35000}', "rtpproxy_port_min"),
    ('{"rtpproxy_control_address": "8.8.8.8"}', "rtpproxy_control_address"),
], ids=["reversed-range", "public-control-socket"])
def test_bad_input_fails_before_any_change(host, extra, variable):
    before = host.check_output("docker inspect -f '{{.Id}} {{.Args}}' rtpproxy")
    run = converge_relay(extra)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert variable in output, output[-3000:]
    assert host.check_output("docker inspect -f '{{.Id}} {{.Args}}' rtpproxy") == before


@pytest.fixture(scope="module")
def rendered_cfg():
    return rendered_config("rtpp-proxy")


def test_the_proxy_config_uses_the_exported_control_socket(rendered_cfg):
    text = rendered_cfg.read_text()
    assert f'modparam("rtpproxy", "rtpproxy_sock", "udp:{RELAY}:7722")' in text


def test_the_proxy_config_passes_the_real_parser(rendered_cfg):
    rc, output = real_parser_check(rendered_cfg)
    assert rc == 0, output


PUBLIC_SIDE = "10.210.81.30"


@pytest.fixture()
def bridged(host):
    """The relay reconverged in bridge mode (core side on its internal address, public side on
    rtpp-public, advertised as the NAT's address), and back to one interface afterwards."""
    run = converge_relay('{"rtpproxy_external_address": "%s", "rtpproxy_external_advertised_address": "198.51.100.31",'
                         ' "rtpproxy_advertised_address": ""}' % PUBLIC_SIDE)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    yield host
    restored = converge_relay()
    assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]


def test_bridge_mode_gives_each_side_its_own_address(bridged):
    args = json.loads(bridged.check_output("docker inspect rtpproxy"))[0]["Args"]
    assert args[args.index("-l") + 1] == f"{RELAY}/{PUBLIC_SIDE}", args
    assert json.loads(bridged.file("/root/rtpproxy-exports.json").content_string)["bridge"] is True
    # an offer from a phone (e) to a media server (i): the media server is given the core address;
    # the media server's answer (i to e): the phone is given the public side's advertised address
    offer = control("b1 Uei bridge-call-1 10.210.81.50 40000 ft-b1").split()
    answer = control("b2 Lie bridge-call-1 10.210.80.41 40002 ft-b1 tt-b1").split()
    assert offer[2:] == [RELAY] and 35000 <= int(offer[1]) <= 35999, offer
    assert answer[2:] == ["198.51.100.31"] and 35000 <= int(answer[1]) <= 35999, answer
    control("b3 D bridge-call-1 ft-b1")


@pytest.mark.parametrize("extra, variable", [
    ('{"rtpproxy_external_address": "10.210.80.30"}', "rtpproxy_external_address"),
    ('{"rtpproxy_external_advertised_address": "198.51.100.31"}', "rtpproxy_external_advertised_address"),
], ids=["same-as-listen", "advertised-without-bridge"])
def test_bad_bridge_input_fails_before_any_change(host, extra, variable):
    before = host.check_output("docker inspect -f '{{.Id}} {{.Args}}' rtpproxy")
    run = converge_relay(extra)
    assert run.returncode != 0 and variable in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    assert host.check_output("docker inspect -f '{{.Id}} {{.Args}}' rtpproxy") == before
