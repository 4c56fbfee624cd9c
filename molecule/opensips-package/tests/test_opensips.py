"""OpenSIPS from packages: service, sockets, MI, calls through the dispatcher,
reload without restart, and a broken change that must not replace the live config."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

import sipkit

testinfra_hosts = ["ansible://osp-proxy"]

PROXY = "10.210.20.10"
MEDIA = {"osp-fs1": "sip:10.210.20.41:5060", "osp-fs2": "sip:10.210.20.42:5060"}
CALLER = sipkit.Account("2001", "edge.sipedge.test", "", "5551000")
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parents[1]))


def other(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def mi(host, method, params=None):
    """One JSON-RPC call to the proxy's MI over HTTP (loopback only)."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1, **({"params": params} if params else {})})
    out = host.check_output(f"curl -s -m 5 -H 'Content-Type: application/json' -d '{body}' http://127.0.0.1:8888/mi")
    reply = json.loads(out)
    assert "error" not in reply, reply
    return reply["result"]


def destinations(host):
    sets = mi(host, "ds_list", {"full": 1})["PARTITIONS"][0]["SETS"]
    return {d["URI"]: d for s in sets for d in s["Destinations"]}


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value opensips")


def converge(*extra_vars: str) -> subprocess.CompletedProcess:
    """Re-run the scenario's converge playbook, as an operator changing inventory would."""
    args = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO / "converge.yml"), "--limit", "osp-proxy"]
    for ev in extra_vars:
        args += ["-e", ev]
    return subprocess.run(args, capture_output=True, text=True, check=False, env=os.environ)


def test_opensips_runs_the_release_under_test(host):
    assert host.service("opensips").is_running
    assert host.service("opensips").is_enabled
    version = host.check_output("/usr/sbin/opensips -V")
    assert f"opensips {os.environ.get('OPENSIPS_VERSION', '3.6')}." in version


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_listens_on_every_socket(host, proto):
    assert host.socket(f"{proto}://{PROXY}:5060").is_listening


def test_mi_stays_on_loopback(host):
    assert host.socket("tcp://127.0.0.1:8888").is_listening
    assert not host.socket(f"tcp://{PROXY}:8888").is_listening


def test_mi_answers_which(host):
    assert "ds_list" in mi(host, "which")


def test_opensips_cli_talks_to_the_local_mi(host):
    out = host.check_output("opensips-cli -x mi uptime")
    assert "Up time" in out or "Now" in out


def test_config_is_private_to_opensips(host):
    cfg = host.file("/etc/opensips/opensips.cfg")
    assert cfg.mode == 0o640
    assert (cfg.user, cfg.group) == ("root", "opensips")


def test_dispatcher_lists_the_rendered_destinations(host):
    deadline = time.monotonic() + 20
    while True:
        found = destinations(host)
        if all(found.get(uri, {}).get("state") == "Active" for uri in MEDIA.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(found) == set(MEDIA.values())
    assert {d["state"] for d in found.values()} == {"Active"}


def test_proxy_answers_options(host):
    client = other("osp-client")
    result = sipkit.run_sipp(client, "uac_options", f"{PROXY}:5060", calls=2)
    assert (result.rc, result.successful) == (0, 2), result.summary()


def test_calls_reach_both_media_servers_round_robin(host):
    client = other("osp-client")
    before = {name: sipkit.uas_invites(other(name), "media") for name in MEDIA}
    result = sipkit.run_sipp(client, "uac_call", f"{PROXY}:5060", accounts=[CALLER], calls=6, rate=3, hold_ms=300)
    assert result.rc == 0, result.summary()
    assert (result.successful, result.failed) == (6, 0), result.summary()
    time.sleep(2)  # SIPp flushes the UAS call log on its own schedule
    got = {name: sipkit.uas_invites(other(name), "media") - before[name] for name in MEDIA}
    assert got == {"osp-fs1": 3, "osp-fs2": 3}


def test_changed_destination_is_reloaded_without_restart(host):
    pid = main_pid(host)
    new_sets = json.dumps({"opensips_dispatcher_sets": [{"id": 1, "destinations": [
        {"uri": MEDIA["osp-fs1"], "description": "fs1", "weight": 3},
        {"uri": MEDIA["osp-fs2"], "description": "fs2 (drained)", "state": "inactive"},
    ]}]})
    run = converge(new_sets)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "RUNNING HANDLER [opensips : Reload OpenSIPS tables]" in run.stdout
    assert main_pid(host) == pid
    found = destinations(host)
    assert found[MEDIA["osp-fs2"]]["state"] == "Inactive"
    assert found[MEDIA["osp-fs1"]]["weight"] == 3
    assert found[MEDIA["osp-fs2"]]["description"] == "fs2 (drained)"
    # back to the inventory's list, again without a restart
    run = converge()
    assert run.returncode == 0, run.stdout[-3000:]
    assert main_pid(host) == pid


def test_broken_snippet_fails_and_the_old_config_keeps_running(host):
    pid = main_pid(host)
    before = host.file("/etc/opensips/opensips.cfg").sha256sum
    broken = json.dumps({"opensips_custom_snippets": {"request": "if (!mf_process_maxfwd(10)) { exit; }"}})
    run = converge(broken)
    assert run.returncode != 0
    assert "unknown command <mf_process_maxfwd>" in run.stdout + run.stderr, run.stdout[-3000:]
    assert host.file("/etc/opensips/opensips.cfg").sha256sum == before
    assert main_pid(host) == pid
    assert host.service("opensips").is_running
    client = other("osp-client")
    result = sipkit.run_sipp(client, "uac_options", f"{PROXY}:5060", calls=1)
    assert result.rc == 0, result.summary()
