"""The pair as active-backup behind a floating address (opensips_cluster_mode active-backup,
sip_floating_address, the sip_vip role's keepalived). The scenario converged active-active; this
module re-converges it the way an operator switches modes, twice (the second run changes nothing),
then: one node holds the address and the sharing tag, a phone registered through the address is in
both nodes, and the active node is killed (docker kill) in the middle of a call load with a 20 s
hold. The address moves to the survivor within the stated time, the calls answered before the kill
end with a BYE through it, and the phone registered before the kill is still reached.

Runs after test_cluster.py (module order), which needs the active-active pair."""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import contacts_of, keep_figures, mi, other, recap_changed, run_playbook, wait_for
from test_cluster import LINK_UP_S, call_reaches_phone, peer_states  # the active-active module's helpers

testinfra_hosts = ["ansible://clu-client"]

SCENARIO = Path(__file__).resolve().parents[1]
VIP = "10.210.65.50"
CLIENT = "10.210.65.100"
DOMAIN = "clu.sipedge.test"
NODES = ("clu-proxy1", "clu-proxy2")
PHONE_PORT = 5076
# the most the address may take to move after the active node dies: keepalived's
# advert_int 1 s x 3 missed adverts plus skew, then the hook gives OpenSIPS the tag
FAILOVER_LIMIT_S = 8.0
RATE, CALLS, HOLD_MS, KILL_AFTER_S = 2, 40, 20000, 10.0

# what an operator adds to group_vars/sip_proxies: both sides of the pair's SIP are the
# floating address; each node keeps its own address for the replication (proto_bin) and the adverts
ACTIVE_BACKUP = {"opensips_cluster_mode": "active-backup", "sip_floating_address": VIP,
                 "opensips_listen_address": VIP, "opensips_internal_address": VIP}

PHONE = sipkit.Account("1001", DOMAIN, "clu-1001-pw", "9000")


def holds_address(node) -> bool:
    return f"inet {VIP}/" in node.run("ip -o addr show").stdout


def tag_state(node) -> str:
    return {t["Tag"]: t["State"] for t in mi(node, "clusterer_list_shtags")}.get("vip", "")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    overlay = tmp_path_factory.mktemp("active-backup") / "pair.yml"
    # host variables of an inventory file outrank the scenario's group_vars files
    overlay.write_text(json.dumps({"all": {"children": {"sip_proxies": {"hosts": {n: ACTIVE_BACKUP for n in NODES}}}}}))
    runs = [run_playbook(SCENARIO / "converge.yml", None, inventories=[overlay]) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    nodes = {name: other(name) for name in NODES}
    assert wait_for(lambda: [holds_address(n) for n in nodes.values()].count(True) == 1, timeout=20), \
        {name: holds_address(n) for name, n in nodes.items()}
    # The switch restarted both nodes. A restart can meet clusterer's ping race, which the link watch
    # mends within RELINK_S; a call set up before that is not replicated to the backup (a CI run: 13 of
    # 40 calls lost at the kill). What follows measures the failover of a pair whose links are Up.
    for name, peer in (("clu-proxy1", 2), ("clu-proxy2", 1)):
        assert wait_for(lambda n=nodes[name], p=peer: peer_states(n) == {p: "Up"}, timeout=LINK_UP_S), \
            (name, peer_states(nodes[name]))
    return {"nodes": nodes, "second_run": runs[1].stdout}


def active(pair) -> str:
    return next(name for name, node in pair["nodes"].items() if holds_address(node))


def test_switching_to_active_backup_is_idempotent(pair):
    # every host: the pair, and the Galera nodes (a rerun never bootstraps or restarts one)
    for name in NODES + ("clu-db1", "clu-db2", "clu-db3", "clu-fs1"):
        assert recap_changed(pair["second_run"], name) == 0, (name, pair["second_run"][-4000:])


def test_the_holder_of_the_address_holds_the_tag_and_the_other_is_backup(pair):
    holder = active(pair)
    states = {name: wait_for(lambda n=node, want=("active" if name == holder else "backup"): tag_state(n) == want
                             and tag_state(n), timeout=15)
              for name, node in pair["nodes"].items()}
    assert states == {name: ("active" if name == holder else "backup") for name in NODES}, states
    # VRRP is open to the peer only
    for name, node in pair["nodes"].items():
        rules = node.check_output("nft list table inet sipedge")
        # IP protocol 112 (nft names it vrrp where /etc/protocols does)
        vrrp = next(line for line in rules.splitlines() if re.search(r"meta l4proto (vrrp|112) accept", line))
        peer = {"clu-proxy1": "10.210.65.11", "clu-proxy2": "10.210.65.10"}[name]
        sources = re.findall(r"\d+\.\d+\.\d+\.\d+", vrrp.split("meta")[0])
        assert sources == [peer], vrrp


@pytest.fixture(scope="module")
def registered(host, pair):
    for node in pair["nodes"].values():
        mi(node, "ul_rm", {"table_name": "location", "aor": PHONE.user})
    reg = sipkit.run_sipp(host, "register_auth", f"{VIP}:5060", accounts=[PHONE], local_port=PHONE_PORT)
    assert reg.successful == 1, reg.summary()
    return f"sip:{PHONE.user}@{CLIENT}:{PHONE_PORT}"


def test_a_phone_registered_through_the_address_is_on_both_nodes(pair, registered):
    for name, node in pair["nodes"].items():
        assert wait_for(lambda n=node: any(registered in c for c in contacts_of(n, PHONE.user)), timeout=10), name


@pytest.fixture(scope="module")
def failover(host, pair, registered):
    """The call load through the address; the active node killed KILL_AFTER_S seconds into it."""
    victim = active(pair)
    survivor = next(name for name in NODES if name != victim)
    outcome: dict = {}
    load = threading.Thread(target=lambda: outcome.setdefault("result", sipkit.run_sipp(
        host, "uac_call", f"{VIP}:5060", accounts=[sipkit.Account("1002", DOMAIN, "clu-1002-pw", "9000")],
        calls=CALLS, rate=RATE, hold_ms=HOLD_MS, recv_timeout_ms=60000, timeout_s=240)))
    started = time.monotonic()
    load.start()
    time.sleep(KILL_AFTER_S)
    answered_before = int(mi(pair["nodes"][victim], "get_statistics",
                             {"statistics": ["active_dialogs"]})["dialog:active_dialogs"])
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    killed = time.monotonic()
    moved = wait_for(lambda: holds_address(pair["nodes"][survivor]), timeout=30, step=0.2)
    moved_after = time.monotonic() - killed
    tagged = wait_for(lambda: tag_state(pair["nodes"][survivor]) == "active", timeout=30, step=0.2)
    tagged_after = time.monotonic() - killed
    load.join(300)
    result = outcome["result"]
    report = {"victim": victim, "survivor": survivor, "address_moved_s": round(moved_after, 1),
              "tag_active_s": round(tagged_after, 1), "kill_at_s": round(killed - started, 1),
              "dialogs_on_victim_at_kill": answered_before, "successful": result.successful,
              "failed": result.failed}
    keep_figures("cluster", "failover", report)
    yield {"report": report, "moved": moved, "tagged": tagged, "result": result,
           "survivor": pair["nodes"][survivor], "victim": victim}
    # the killed node comes back as the backup (nopreempt): the address stays put
    subprocess.run(["docker", "start", victim], check=False, capture_output=True)


def test_the_address_and_the_tag_move_to_the_survivor_in_time(failover):
    report = failover["report"]
    assert failover["moved"] and report["address_moved_s"] <= FAILOVER_LIMIT_S, report
    assert failover["tagged"] and report["tag_active_s"] <= FAILOVER_LIMIT_S + 2, report


def test_calls_answered_before_the_kill_end_with_bye_through_the_survivor(failover):
    report, result = failover["report"], failover["result"]
    assert report["dialogs_on_victim_at_kill"] >= 5, report        # the load really held calls at the kill
    # only calls in setup while the address was moving may fail: at most the calls started in that window
    in_setup_bound = math.ceil(RATE * (report["address_moved_s"] + 1))
    assert result.failed <= in_setup_bound, (report, result.summary())
    assert result.successful + result.failed == CALLS, result.summary()
    assert result.successful >= CALLS - in_setup_bound, (report, result.summary())


def test_the_phone_registered_before_the_kill_is_reached_through_the_survivor(host, failover, registered):
    assert any(registered in c for c in contacts_of(failover["survivor"], PHONE.user))
    call_reaches_phone(host, VIP, PHONE_PORT)
