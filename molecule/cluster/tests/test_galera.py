"""The database tier: three MariaDB Galera nodes (sip_db_galera, the opensips_db role) behind the
database's floating address (sip_db_floating_address, keepalived from the sip_vip role, held only by
a node that is synced in the primary component). The nodes form one synced cluster and replicate
only between themselves. When the node holding the address dies (docker kill) in the middle of a
REGISTER load and a call load through the proxies' floating address, the address moves to a synced
node, REGISTERs and calls after the move all succeed, every answered call leaves its CDR, and the
dead node comes back (docker start: it rejoins by itself) with every row, without taking the
address back. A `--limit` run for a stopped node rejoins it and never bootstraps a second cluster.

Runs after test_floating_address.py (module order): the load goes through the pair's address."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import keep_figures, other, recap_changed, run_playbook, wait_for
from test_floating_address import DOMAIN, NODES, VIP, holds_address

testinfra_hosts = ["ansible://clu-client"]

SCENARIO = Path(__file__).resolve().parents[1]
ROOT = SCENARIO.parents[1]
DBS = {"clu-db1": "10.210.65.20", "clu-db2": "10.210.65.21", "clu-db3": "10.210.65.22"}
DB_VIP = "10.210.65.60"
ADMIN = "mysql --defaults-file=/etc/mysql/opensips-db-admin.cnf -N -B opensips -e"
# the tables whose rows the cluster must hold on every node
TABLES = ("subscriber", "version", "address", "acc", "missed_calls")
REG_RATE, REGISTERS = 10, 300            # 30 s of REGISTERs, one account (1003)
CALL_RATE, CALLS, HOLD_MS = 1, 25, 1000
KILL_AFTER_S = 8.0
AFTER_MOVE = 100                        # REGISTERs once the address has moved, the dead node still down
# keepalived: 3 missed adverts at 1 s, plus skew
MOVE_LIMIT_S = 8.0


def status(db) -> dict[str, str]:
    """The node's wsrep_* status; {} while its server does not answer (stopped, starting)."""
    out = db.run("mariadb --protocol=socket -N -B -e \"SHOW GLOBAL STATUS LIKE 'wsrep_%'\"")
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line) if out.rc == 0 else {}


def synced(db) -> bool:
    s = status(db)
    return (s.get("wsrep_cluster_status"), s.get("wsrep_local_state_comment"), s.get("wsrep_cluster_size")) \
        == ("Primary", "Synced", str(len(DBS)))


def checksums(db) -> dict[str, str]:
    out = db.check_output(f"{ADMIN} {json.dumps('CHECKSUM TABLE ' + ', '.join(TABLES))}")
    return dict(line.split("\t")[:2] for line in out.splitlines())


def count(db, table: str) -> int:
    return int(db.check_output(f"{ADMIN} {json.dumps('SELECT COUNT(*) FROM ' + table)}").strip())


def holds_db_address(db) -> bool:
    out = db.run("ip -o addr show")
    return out.rc == 0 and f"inet {DB_VIP}/" in out.stdout


def uptime(db) -> int:
    out = db.check_output("mariadb --protocol=socket -N -B -e \"SHOW GLOBAL STATUS LIKE 'Uptime'\"")
    return int(out.split()[1])


def same_rows_everywhere(dbs) -> bool:
    return len({tuple(sorted(checksums(db).items())) for db in dbs.values()}) == 1


@pytest.fixture(scope="module")
def dbs():
    return {name: other(name) for name in DBS}


def test_the_three_nodes_are_one_synced_primary_component(dbs):
    for name, db in dbs.items():
        assert wait_for(lambda d=db: synced(d), timeout=60, step=2), (name, status(db))
    assert len({status(db)["wsrep_cluster_state_uuid"] for db in dbs.values()}) == 1
    # the schema and the rows were written once, on one node, and are on all three
    assert same_rows_everywhere(dbs)


def test_one_synced_node_holds_the_database_address(dbs):
    assert wait_for(lambda: [holds_db_address(db) for db in dbs.values()].count(True) == 1, timeout=20), \
        {name: holds_db_address(db) for name, db in dbs.items()}
    holder = next(db for db in dbs.values() if holds_db_address(db))
    assert synced(holder) and holder.run("/usr/local/sbin/opensips-db-ready").rc == 0
    # the proxies know the database only by that address
    for name in NODES:
        cfg = other(name).check_output("cat /etc/opensips/opensips.cfg")
        assert f"@{DB_VIP}:3306/opensips" in cfg and not any(f"@{a}:3306" in cfg for a in DBS.values()), name


@pytest.mark.parametrize("port", [4567, 4568, 4444])
def test_replication_ports_answer_the_other_nodes_only(host, dbs, port):
    """A stranger (the phone's host) cannot reach a node's Galera ports; its peers are let in."""
    probe = f"timeout 3 bash -c '</dev/tcp/{DBS['clu-db1']}/{port}'"
    assert host.run(probe).rc != 0
    rules = dbs["clu-db1"].check_output("nft list ruleset")
    rule = next(line for line in rules.splitlines() if f"dport {port} accept" in line)
    assert "10.210.65.21" in rule and "10.210.65.22" in rule and "10.210.65.100" not in rule, rule
    if port == 4567:
        assert dbs["clu-db2"].run(probe).rc == 0


@pytest.fixture(scope="module")
def outage(host, dbs):
    """A REGISTER load and a call load through the proxies' address; the node holding the database's
    address killed KILL_AFTER_S seconds in; REGISTERs again once the address has moved; then the dead
    node started again."""
    assert any(holds_address(other(name)) for name in NODES), "no proxy holds the floating address"
    victim = next(name for name, db in dbs.items() if holds_db_address(db))
    witness = next(name for name in DBS if name != victim)
    acc_before = count(dbs[witness], "acc")
    phone = sipkit.Account("1003", DOMAIN, "clu-1003-pw", "9000")
    results: dict = {}
    loads = [
        threading.Thread(target=lambda: results.setdefault("register", sipkit.run_sipp(
            host, "register_auth", f"{VIP}:5060", accounts=[phone], calls=REGISTERS, rate=REG_RATE,
            local_port=5091, timeout_s=180))),
        threading.Thread(target=lambda: results.setdefault("calls", sipkit.run_sipp(
            host, "uac_call", f"{VIP}:5060", accounts=[sipkit.Account("1002", DOMAIN, "clu-1002-pw", "9000")],
            calls=CALLS, rate=CALL_RATE, hold_ms=HOLD_MS, local_port=5092, timeout_s=180))),
    ]
    for load in loads:
        load.start()
    time.sleep(KILL_AFTER_S)
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    killed = time.monotonic()
    moved = wait_for(lambda: next((n for n in DBS if n != victim and holds_db_address(dbs[n])), None), timeout=30, step=0.2)
    moved_after = time.monotonic() - killed
    for load in loads:
        load.join(240)
    # the address has moved and the dead node is still down: nothing may fail now
    after = sipkit.run_sipp(host, "register_auth", f"{VIP}:5060", accounts=[phone], calls=AFTER_MOVE, rate=REG_RATE,
                            local_port=5093, timeout_s=120)
    subprocess.run(["docker", "start", victim], check=True, capture_output=True)
    started = time.monotonic()
    rejoined = wait_for(lambda: synced(dbs[victim]), timeout=180, step=2)
    rejoined_after = time.monotonic() - started
    reg, calls = results["register"], results["calls"]
    report = {"victim": victim, "address_moved_to": moved, "address_moved_s": round(moved_after, 1),
              "rejoined_s": round(rejoined_after, 1),
              "registers": reg.successful, "registers_failed": reg.failed,
              "registers_after_move": after.successful, "registers_after_move_failed": after.failed,
              "calls": calls.successful, "calls_failed": calls.failed}
    keep_figures("cluster", "galera", report)
    return {"report": report, "moved": moved, "rejoined": rejoined, "register": reg, "after": after,
            "calls": calls, "acc_before": acc_before, "victim": victim, "witness": witness}


def test_the_database_address_moves_to_a_synced_node_in_time(dbs, outage):
    report = outage["report"]
    assert outage["moved"] and report["address_moved_s"] <= MOVE_LIMIT_S, report


def test_no_register_fails_once_the_address_has_moved(outage):
    after = outage["after"]
    assert after.successful == AFTER_MOVE and after.failed == 0, (outage["report"], after.summary())


def test_only_registers_sent_while_the_address_moved_fail(outage):
    report, reg = outage["report"], outage["register"]
    window_bound = math.ceil(REG_RATE * (report["address_moved_s"] + 2))
    assert reg.successful + reg.failed == REGISTERS and reg.failed <= window_bound, (report, reg.summary())


def test_every_call_answered_and_ended_outside_the_window_leaves_its_cdr(dbs, outage):
    report, calls = outage["report"], outage["calls"]
    window = math.ceil(CALL_RATE * (report["address_moved_s"] + 2))
    assert calls.successful + calls.failed == CALLS, calls.summary()
    assert calls.failed <= window, (report, calls.summary())
    # one CDR per answered call, written at its end to whichever node held the address; a call that
    # ended while the address moved has none (the insert failed: acc logs it, the allow-list names it),
    # and one SIPp counts as failed may still have been answered and ended at the proxy
    cdrs = count(dbs[outage["witness"]], "acc") - outage["acc_before"]
    report["cdrs"] = cdrs
    assert calls.successful - window <= cdrs <= calls.successful + calls.failed, report


def test_the_dead_node_rejoins_with_every_row_and_leaves_the_address_where_it_is(dbs, outage):
    assert outage["rejoined"], (outage["report"], status(dbs[outage["victim"]]))
    # the rows written while it was dead (the CDRs of the calls) are on it too
    assert wait_for(lambda: same_rows_everywhere(dbs), timeout=30), {name: checksums(db) for name, db in dbs.items()}
    assert count(dbs[outage["victim"]], "acc") == count(dbs[outage["witness"]], "acc")
    # nopreempt: the address stays on the node that took it over
    time.sleep(3)
    assert holds_db_address(dbs[outage["moved"]]) and not holds_db_address(dbs[outage["victim"]])


def test_a_run_limited_to_a_stopped_node_rejoins_it_and_never_bootstraps(dbs, outage):
    """An operator's `--limit` run of the database play for a node that is down: the role asks every node,
    finds the cluster running, and restarts only that node into it; the others are never touched."""
    spare = next(name for name in DBS if name != outage["moved"])
    assert wait_for(lambda: all(synced(db) for db in dbs.values()), timeout=60, step=2)
    dbs[spare].check_output("systemctl stop mariadb")
    assert wait_for(lambda: status(dbs[outage["moved"]]).get("wsrep_cluster_size") == "2", timeout=30)
    others = [name for name in DBS if name != spare]
    before = {name: uptime(dbs[name]) for name in others}
    run = run_playbook(ROOT / "playbooks" / "databases.yml", spare)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert recap_changed(run.stdout, spare) >= 1
    assert all(synced(db) for db in dbs.values()), {name: status(db) for name, db in dbs.items()}
    # the running nodes were never restarted, and the rows are the same everywhere
    assert all(uptime(dbs[name]) > seconds for name, seconds in before.items()), before
    assert same_rows_everywhere(dbs)
    again = run_playbook(ROOT / "playbooks" / "databases.yml", spare)
    assert again.returncode == 0 and recap_changed(again.stdout, spare) == 0, again.stdout[-3000:]
