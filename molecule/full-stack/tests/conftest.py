"""Fixtures shared by the full-stack test modules."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from opensips_checks import INVENTORY, other


@pytest.fixture(scope="session")
def lab():
    """sip_domain, the subscribers and the callee the lab's phone dials, as Ansible templates them."""
    expr = "{{ {'domain': sip_domain, 'subscribers': sip_subscribers, 'callee': lab_client_callee} | to_json }}"
    run = subprocess.run(["ansible", "stack-client", "-i", INVENTORY, "-o", "-m", "ansible.builtin.debug",
                          "-a", f"msg={expr}"], capture_output=True, text=True, check=True, env=os.environ)
    payload = run.stdout.split("=>", 1)[1]
    data = json.loads(payload)["msg"]
    data = json.loads(data) if isinstance(data, str) else data
    assert len(data["subscribers"]) >= 2, "the lab inventory needs two test accounts"
    return data


@pytest.fixture()
def fs1_stopped():
    """stack-fs1's SIP stand-in stopped for one test (its port free), started again after it."""
    fs1 = other("stack-fs1")
    fs1.check_output("systemctl stop sipkit-uas-media.service")
    yield fs1
    fs1.check_output("systemctl start sipkit-uas-media.service")
