"""A reboot of the proxy (docker restart: what a reboot does to a container): the firewall loads only
its own table at boot, the rules of others (the container runtime's DNS) survive it, OpenSIPS comes back
answering through the firewall, and a rerun of the playbook changes nothing. Runs after the other tests
of the scenario (file order)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import other, recap_changed, run_playbook

testinfra_hosts = ["ansible://edge-proxy"]

SCENARIO = Path(__file__).resolve().parents[1]
PROXY = "10.210.70.10"


def tables(host) -> set[str]:
    return {line.strip() for line in host.check_output("nft list tables").splitlines() if line.strip()}


@pytest.fixture(scope="module")
def rebooted(host):
    before = tables(host)
    subprocess.run(["docker", "restart", "-t", "30", "edge-proxy"], check=True, capture_output=True, timeout=180)
    state = ""
    for _ in range(90):
        state = host.run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(2)
    return {"before": before, "state": state}


def test_the_host_finished_booting(host, rebooted):
    assert rebooted["state"] in ("running", "degraded"), rebooted["state"]
    for unit in ("sipedge-firewall", "opensips"):
        assert host.service(unit).is_running or host.run(f"systemctl is-active {unit}").stdout.strip() == "active", unit
    assert host.run("systemctl is-enabled nftables").stdout.strip() != "enabled"


def test_the_firewall_table_is_back_and_nobody_elses_was_flushed(host, rebooted):
    after = tables(host)
    assert "table inet sipedge" in after
    # every table there before the reboot (the runtime's DNS rules among them) is there again
    assert rebooted["before"] <= after, rebooted["before"] - after
    assert "policy drop" in host.check_output("nft list chain inet sipedge input")


def test_names_still_resolve(host, rebooted):
    # the container runtime's DNS (its own nftables/iptables rules in this namespace)
    assert host.run("getent hosts edge-outside").rc == 0


def test_opensips_answers_again_through_the_firewall(rebooted):
    result = None
    for _ in range(15):
        result = sipkit.run_sipp(other("edge-outside"), "uac_options", f"{PROXY}:5060")
        if (result.rc, result.successful) == (0, 1):
            break
        time.sleep(2)
    assert (result.rc, result.successful) == (0, 1), result.summary()


def test_a_rerun_after_the_reboot_changes_nothing(rebooted):
    """The scenario's idempotence check (molecule's own step is left out of its sequence): the whole
    converge again, after the other tests' changes were undone and the proxy rebooted."""
    run = run_playbook(SCENARIO / "converge.yml", None)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    for name in ("edge-proxy", "edge-peer", "edge-outside"):
        assert recap_changed(run.stdout, name) == 0, (name, run.stdout[-4000:])
