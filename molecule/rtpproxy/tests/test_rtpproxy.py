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
    assert exports["socket"] == f"udp:{RELAY}:7722"
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
