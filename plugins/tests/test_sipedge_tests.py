"""The shared Jinja tests (plugins/test/sipedge_tests.py): "does this host hold the address", on the
output `ip -o addr show` prints, and through Ansible itself as the playbooks call it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

import sipedge_tests as t  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# `ip -o addr show` of a lab proxy (two networks), with the lines keepalived adds for a floating
# address: an IPv4 /32 and an IPv6 /128 (ip prints IPv6 compressed, in lower case)
HOLDER = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2520: eth1    inet 10.210.0.10/24 brd 10.210.0.255 scope global eth1\\       valid_lft forever preferred_lft forever
2520: eth1    inet 10.210.0.50/32 scope global eth1\\       valid_lft forever preferred_lft forever
2522: eth0    inet 10.210.1.10/24 brd 10.210.1.255 scope global eth0\\       valid_lft forever preferred_lft forever
2522: eth0    inet6 fd00:20::50/128 scope global nodad \\       valid_lft forever preferred_lft forever
"""


@pytest.mark.parametrize("address", ["10.210.0.50", "10.210.1.10", "fd00:20::50", "[fd00:20::50]",
                                     "FD00:0020:0000:0000:0000:0000:0000:0050"])
def test_an_address_on_an_interface_is_held(address):
    assert t.sip_address_holder(HOLDER, address) is True


@pytest.mark.parametrize("address", [
    "10.210.0.5",      # a prefix of a held address
    "10.210.0.500",    # not an address
    "10.210.0.255",    # a broadcast address printed on the line, not held
    "10x210x0x50",     # what an unescaped regular expression would match
    "fd00:20::5", "", None, "sip1.example.net",
])
def test_anything_else_is_not(address):
    assert t.sip_address_holder(HOLDER, address) is False


def test_no_output_holds_nothing():
    assert t.sip_address_holder("", "10.210.0.50") is False
    assert t.sip_address_holder(None, "10.210.0.50") is False


def test_ansible_resolves_the_test_by_its_collection_name(tmp_path):
    """The playbooks call it as sipedge.edge.sip_address_holder (selectattr and `is`)."""
    playbook = tmp_path / "p.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "ansible.builtin.debug": {"msg": "{{ [{'stdout': out}, {'stdout': ''}] | selectattr('stdout', "
                                         "'sipedge.edge.sip_address_holder', '10.210.0.50') | list | length }}"
                                         " {{ out is not sipedge.edge.sip_address_holder('10.210.0.5') }}"},
        "vars": {"out": HOLDER}}]}]))
    run = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r'msg"?: "?1 True', run.stdout), run.stdout
