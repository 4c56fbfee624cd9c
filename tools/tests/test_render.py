"""Render-only mode (playbooks/render.yml) against the example inventories: real
files from the real templates, written on the controller without contacting a host."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VAULT = ROOT / "inventories" / "DEMO-vault-password.txt"


def render(env: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = ["ansible-playbook", "-i", str(ROOT / "inventories" / env), str(ROOT / "playbooks" / "render.yml"),
            "--vault-password-file", str(VAULT), "-e", f"sip_render_dir={out}", *extra]
    environ = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, env=environ)


def hosts(env: str) -> dict[str, dict[str, dict]]:
    """group -> host -> host vars, from the inventory file."""
    data = yaml.safe_load((ROOT / "inventories" / env / "hosts.yml").read_text())
    return {group: {h: v or {} for h, v in body["hosts"].items()} for group, body in data["all"]["children"].items()}


@pytest.fixture(scope="module", params=["production", "staging"])
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"render-{request.param}")
    run = render(request.param, out)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return request.param, out, run


def test_every_host_gets_its_files(rendered):
    env, out, _ = rendered
    inv = hosts(env)
    expected = {"sip_proxies": ["opensips.cfg", "dbtext/dispatcher", "dbtext/address", "sipedge.nft"],
                "sip_db": ["server.cnf", "sipedge.nft"], "media_relays": ["rtpengine.conf", "sipedge.nft"],
                "media_servers": ["acl.conf.xml", "sipedge.nft"]}
    for group, files in expected.items():
        for host in inv[group]:
            for name in files:
                assert (out / host / name).is_file(), f"{host}/{name}"
    assert {p.name for p in out.iterdir()} == {h for g in inv.values() for h in g}


def test_each_proxy_listens_on_its_own_address(rendered):
    env, out, _ = rendered
    proxies = hosts(env)["sip_proxies"]
    for host, hv in proxies.items():
        sockets = re.findall(r"^socket=\w+:([^:\s]+):\d+", (out / host / "opensips.cfg").read_text(), re.M)
        mine = {hv.get("sip_internal_address"), hv.get("sip_public_address")}
        assert sockets and set(sockets) <= mine, (host, sockets)
        others = {a for h, v in proxies.items() if h != host for a in (v.get("sip_internal_address"), v.get("sip_public_address"))}
        assert not set(sockets) & others


def test_dispatcher_lists_the_inventory_media_servers(rendered):
    env, out, _ = rendered
    media = {hv["sip_internal_address"] for hv in hosts(env)["media_servers"].values()}
    for host in hosts(env)["sip_proxies"]:
        rows = (out / host / "dbtext" / "dispatcher").read_text().splitlines()[1:]
        found = {re.search(r"sip\\:([0-9.]+)\\:", row).group(1) for row in rows if row.strip()}
        assert found == media


def test_acl_lists_exactly_the_proxies(rendered):
    env, out, _ = rendered
    proxies = {f"{hv['sip_internal_address']}/32" for hv in hosts(env)["sip_proxies"].values()}
    for host in hosts(env)["media_servers"]:
        tree = ET.parse(out / host / "acl.conf.xml")
        lists = [lst for lst in tree.iter("list")
                 if any(n.get("cidr") in proxies for n in lst.iter("node"))]
        assert len(lists) == 1 and lists[0].get("default") == "deny"
        assert {n.get("cidr") for n in lists[0].iter("node") if n.get("type") == "allow"} == proxies


def test_relay_rtp_range_equals_the_firewall_range(rendered):
    env, out, _ = rendered
    for host in hosts(env)["media_relays"]:
        conf = (out / host / "rtpengine.conf").read_text()
        low, high = (re.search(rf"^port-{k} = (\d+)", conf, re.M).group(1) for k in ("min", "max"))
        assert re.search(rf"udp dport {low}-{high} accept", (out / host / "sipedge.nft").read_text())


def test_a_second_render_is_identical(rendered, tmp_path):
    env, out, _ = rendered
    again = render(env, tmp_path)
    assert again.returncode == 0
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert first == second


def test_bad_input_fails_the_render_with_the_variable_name(tmp_path):
    run = render("production", tmp_path, "-e", "rtpengine_port_min=40000", "-e", "rtpengine_port_max=30000")
    assert run.returncode != 0
    assert "rtpengine_port_min" in run.stdout + run.stderr
    relays = hosts("production")["media_relays"]
    assert not any((tmp_path / h / "rtpengine.conf").exists() for h in relays)
