"""TLS/WSS listeners with a lab CA, and the nftables firewall built from the roles' exported ports."""

from __future__ import annotations

import base64
import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest

import sipkit
from opensips_checks import location, other, run_playbook

testinfra_hosts = ["ansible://edge-proxy"]

SCENARIO = Path(__file__).resolve().parents[1]
PROXY = "10.210.70.10"
CA = "/tmp/edge-lab-ca.pem"
TLS_PORTS = [5061, 7443]


def converge_proxy(*extra_vars: str) -> subprocess.CompletedProcess:
    return run_playbook(SCENARIO / "converge.yml", "edge-proxy", *extra_vars)


@pytest.fixture(scope="module")
def outside(host):
    client = other("edge-outside")
    ca = base64.b64encode(host.file("/etc/sip-tls/ca.pem").content).decode()
    client.check_output(f"echo {ca} | base64 -d > {CA}")
    return client


def s_client(client, port, *options):
    return client.run(f"echo | timeout 10 openssl s_client -connect {PROXY}:{port} -CAfile {CA} -verify_return_error "
                      f"-servername {PROXY} {' '.join(options)} 2>&1")


# --- TLS -------------------------------------------------------------------------------

@pytest.mark.parametrize("port", TLS_PORTS)
@pytest.mark.parametrize("version, expected", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_handshake_verifies_against_the_lab_ca(outside, port, version, expected):
    out = s_client(outside, port, version)
    assert out.rc == 0, out.stdout
    assert f"Protocol  : {expected}" in out.stdout or f"New, {expected}" in out.stdout, out.stdout
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout


@pytest.mark.parametrize("port", TLS_PORTS)
@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused(outside, port, version):
    # SECLEVEL=0 lets the client offer TLS 1.0/1.1 at all; the refusal must come from the server.
    out = s_client(outside, port, version, "-cipher", "'DEFAULT:@SECLEVEL=0'")
    assert out.rc != 0, out.stdout
    assert "Cipher is (NONE)" in out.stdout or "alert" in out.stdout, out.stdout


def test_certificate_names_the_proxy(host):
    text = host.check_output("openssl x509 -in /etc/sip-tls/cert.pem -noout -text")
    assert f"IP Address:{PROXY}" in text and "DNS:tls.sipedge.test" in text


def test_key_and_certificate_modes(host):
    key, cert = host.file("/etc/sip-tls/privkey.pem"), host.file("/etc/sip-tls/cert.pem")
    assert (key.mode, key.user, key.group) == (0o640, "root", "opensips")
    assert (cert.mode, cert.user) == (0o644, "root")
    assert host.file("/etc/sip-tls").mode == 0o750


def test_the_ca_key_stays_on_the_controller(host):
    assert host.run("grep -rl 'PRIVATE KEY' /etc/sip-tls").stdout.split() == ["/etc/sip-tls/privkey.pem"]


def test_a_key_without_a_certificate_fails_early(host):
    before = host.file("/etc/sip-tls/cert.pem").sha256sum
    run = converge_proxy("sip_tls_mode=provided", "sip_tls_private_key_content=anything")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "sip_tls_certificate_src or sip_tls_certificate_content" in output, output[-3000:]
    assert host.file("/etc/sip-tls/cert.pem").sha256sum == before


def test_a_certificate_expiring_soon_fails_and_changes_nothing(host, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.sipedge.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    before = host.file("/etc/sip-tls/cert.pem").sha256sum
    run = converge_proxy("sip_tls_mode=provided", f"sip_tls_certificate_src={tmp_path / 'cert.pem'}",
                         f"sip_tls_private_key_src={tmp_path / 'key.pem'}")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "sip_tls_min_valid_days=30" in output, output[-3000:]
    assert host.file("/etc/sip-tls/cert.pem").sha256sum == before


def run_phone(client, transport, port, user):
    """sipkit-phone (roles/sipp/files): a REGISTER over TLS or WSS, as a TLS or WebRTC phone sends it."""
    return client.run(f"sipkit-phone --transport {transport} --proxy {PROXY} --port {port} --ca {CA} "
                      f"--user {user} --domain tls.sipedge.test")


def test_register_over_tls_succeeds(outside):
    out = run_phone(outside, "tls", 5061, "2001")
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "200 OK", out.stdout


def test_register_over_wss_succeeds(outside):
    """A WebRTC-style client: SIP over a secure websocket (subprotocol "sip", with an Origin)."""
    out = run_phone(outside, "wss", 7443, "2002")
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "200 OK", out.stdout


def test_registrations_over_tls_and_wss_are_in_usrloc(host, outside):
    run_phone(outside, "tls", 5061, "2003")
    run_phone(outside, "wss", 7443, "2004")
    contacts = json.dumps(location(host))
    assert "transport=tls" in contacts and "transport=ws" in contacts, contacts[:2000]


# --- firewall --------------------------------------------------------------------------

def ruleset_ports(host):
    """(proto, port, sources) of every accept rule with a destination port in the sipedge table."""
    data = json.loads(host.check_output("nft -j list table inet sipedge"))
    out = set()
    for item in data["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        port, proto, sources = None, None, ()
        for expr in rule["expr"]:
            match = expr.get("match")
            if not match:
                continue
            field = match["left"].get("payload", {})
            if field.get("field") == "dport":
                proto, port = field["protocol"], match["right"]
                port = f"{port['range'][0]}-{port['range'][1]}" if isinstance(port, dict) else port
            if field.get("field") == "saddr":
                right = match["right"]
                sources = tuple(sorted(right["set"])) if isinstance(right, dict) else (right,)
        if port is not None:
            out.add((proto, port, sources))
    return out


def test_ruleset_opens_exactly_the_exported_ports(host):
    assert ruleset_ports(host) == {
        ("udp", 5060, ()), ("tcp", 5060, ()), ("tcp", 5061, ()), ("tcp", 7443, ()),
        ("tcp", 9100, ("10.210.70.20",)),
    }


def test_inbound_policy_is_drop(host):
    assert re.search(r"type filter hook input priority filter; policy drop;", host.check_output("nft list table inet sipedge"))


def test_spoofed_sources_are_dropped_by_a_reverse_path_check(host):
    rpf = host.check_output("nft list chain inet sipedge rpfilter")
    assert "type filter hook prerouting priority raw" in rpf
    assert re.search(r'iifname != "lo" fib saddr \. iif oif missing counter packets \d+ bytes \d+ drop', rpf), rpf


def test_mi_on_loopback_is_not_opened(host):
    assert 8888 not in {port for _, port, _ in ruleset_ports(host)}


@pytest.fixture()
def listeners(host):
    """Plain TCP listeners on a port the inventory restricts and one it never declared."""
    host.run("nohup python3 -m http.server 9100 --bind 0.0.0.0 >/dev/null 2>&1 & "
             "nohup python3 -m http.server 9999 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1")
    yield
    host.run("pkill -f 'http.server 9100'; pkill -f 'http.server 9999'")


def tcp_open(client, port):
    return client.run(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{PROXY}/{port}'").rc == 0


def test_declared_ports_answer_and_undeclared_ones_do_not(host, listeners):
    peer, outside = other("edge-peer"), other("edge-outside")
    assert host.run("timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999'").rc == 0  # the listener is up
    assert tcp_open(outside, 5061)
    assert tcp_open(peer, 9100)           # restricted rule: from the internal peer
    assert not tcp_open(outside, 9100)    # ... and from nowhere else
    assert not tcp_open(peer, 9999)       # never declared
    assert not tcp_open(outside, 9999)


def test_sip_over_udp_still_answers_through_the_firewall():
    result = sipkit.run_sipp(other("edge-outside"), "uac_options", f"{PROXY}:5060")
    assert (result.rc, result.successful) == (0, 1), result.summary()


def test_a_reversed_port_range_fails_early(host):
    before = host.file("/etc/nftables.d/sipedge.nft").sha256sum
    bad = json.dumps({"sip_firewall_extra_rules": [{"name": "reversed", "proto": "udp", "port": "40000-30000"}]})
    run = converge_proxy(bad)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "firewall rule reversed" in output, output[-3000:]
    assert host.file("/etc/nftables.d/sipedge.nft").sha256sum == before
