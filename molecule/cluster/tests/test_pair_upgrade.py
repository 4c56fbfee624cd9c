"""playbooks/upgrade.yml on the active-backup pair (after test_floating_address.py, whose killed node
is back as the backup): under a steady call load through the floating address, the backup is
upgraded first and the holder last, the address moves once, to an upgraded node, and the calls
go on."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import keep_figures, mi, other, run_playbook, wait_for
from test_floating_address import ACTIVE_BACKUP, DOMAIN, NODES, VIP, holds_address, tag_state

testinfra_hosts = ["ansible://clu-client"]

ROOT = Path(__file__).resolve().parents[3]
# the load outlasts the upgrade of the pair (about 60-120 s here)
RATE, CALLS, HOLD_MS = 1, 180, 4000


def peers_up(node) -> bool:
    clusters = mi(node, "clusterer_list")["Clusters"]
    return all(n["link_state"] == "Up" for c in clusters for n in c["Nodes"])


@pytest.fixture(scope="module")
def upgraded(host, tmp_path_factory):
    nodes = {name: other(name) for name in NODES}
    # the node test_floating_address killed is back: OpenSIPS, keepalived, and its peer link
    for name, node in nodes.items():
        assert wait_for(lambda n=node: n.run("systemctl is-active opensips keepalived").stdout.split() == ["active", "active"],
                        timeout=90, step=2), name
        assert wait_for(lambda n=node: peers_up(n), timeout=60, step=2), name
    holder = next(name for name, node in nodes.items() if holds_address(node))
    overlay = tmp_path_factory.mktemp("pair-upgrade") / "pair.yml"
    overlay.write_text(json.dumps({"all": {"children": {"sip_proxies": {"hosts": {n: ACTIVE_BACKUP for n in NODES}}}}}))
    outcome: dict = {}
    load = threading.Thread(target=lambda: outcome.setdefault("result", sipkit.run_sipp(
        host, "uac_call", f"{VIP}:5060", accounts=[sipkit.Account("1002", DOMAIN, "clu-1002-pw", "9000")],
        calls=CALLS, rate=RATE, hold_ms=HOLD_MS, recv_timeout_ms=60000, timeout_s=600)))
    load.start()
    # the proxies only: the scenario has one media server, which the media-server step would take
    # out of rotation (the rolling-upgrade scenario covers that step)
    since = nodes[NODES[0]].check_output("date '+%Y-%m-%d %H:%M:%S'")
    started = time.monotonic()
    run = run_playbook(ROOT / "playbooks" / "upgrade.yml", "sip_proxies", inventories=[overlay])
    upgrade_s = time.monotonic() - started
    load.join(600)
    # how often a restarted node's link was left down and its pinging restarted (opensips-cluster-links)
    restarts = {name: int(node.run(f"journalctl -q --no-pager -t opensips-cluster-links --since '{since}' "
                                   "| grep -c 'restarting its pinging'").stdout.strip() or 0)
                for name, node in nodes.items()}
    report = {"upgrade_s": round(upgrade_s, 1), "link_pinging_restarted": restarts}
    keep_figures("cluster", "pair-upgrade", report)
    return {"run": run, "holder_before": holder, "nodes": nodes, "load": outcome.get("result"), "upgrade_s": upgrade_s}


def test_the_upgrade_succeeds(upgraded):
    run = upgraded["run"]
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]


def test_the_backup_goes_first_and_the_holder_last(upgraded):
    out = upgraded["run"].stdout
    # serial: 1 prints the play's banner once per node; each batch names its node first
    batches = out.split("PLAY [Proxies, one at a time]")[1:]
    order = [re.search(r"\[(clu-proxy\d)\]", batch).group(1) for batch in batches]
    backup = next(n for n in NODES if n != upgraded["holder_before"])
    assert order == [backup, upgraded["holder_before"]], order
    for batch in batches:
        assert "Hand the floating address to the peer" in batch and "Rejoin the pair as the backup" in batch


def test_the_address_moved_once_to_the_upgraded_backup(upgraded):
    backup = next(n for n in NODES if n != upgraded["holder_before"])
    nodes = upgraded["nodes"]
    assert holds_address(nodes[backup]) and not holds_address(nodes[upgraded["holder_before"]])
    assert wait_for(lambda: tag_state(nodes[backup]) == "active", timeout=10)
    assert tag_state(nodes[upgraded["holder_before"]]) == "backup"


def test_the_calls_went_on(upgraded):
    result = upgraded["load"]
    assert result is not None
    # at most the calls in setup during the one move of the address (1 call/s)
    # the load covered the whole upgrade
    assert CALLS / RATE > upgraded["upgrade_s"], upgraded["upgrade_s"]
    assert result.successful + result.failed == CALLS, result.summary()
    assert result.failed <= 2, result.summary()
