"""playbooks/upgrade.yml over a live edge under steady call load: no call lost, no registration lost."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import INVENTORY, assert_rerun_changes_nothing, location, mi, other

testinfra_hosts = ["ansible://upg-client"]

SCENARIO = Path(__file__).resolve().parents[1]
ROOT = SCENARIO.parents[1]
PROXIES = {"upg-proxy1": ("10.210.95.10", 8891, "1001"), "upg-proxy2": ("10.210.95.11", 8892, "1002")}
DOMAIN = "upg.sipedge.test"
PASSWORDS = {"1001": "upg-1001-pw", "1002": "upg-1002-pw"}
TARGET = os.environ.get("OPENSIPS_VERSION", "3.6")
FROM = os.environ.get("OPENSIPS_UPGRADE_FROM_VERSION", TARGET)
RATE, HOLD_MS = 2, 2000


def release(proxy) -> str:
    return mi(proxy, "version")["Server"]


def start_load(client, proxy_ip: str, port: int, user: str) -> str:
    """A steady SIPp call load through one proxy, controllable on UDP ``port``."""
    workdir = f"/tmp/load-{port}"
    accounts = sipkit.injection_file([sipkit.Account(user, DOMAIN, PASSWORDS[user], "9000")])
    client.run(f"rm -rf {workdir} && mkdir -p {workdir}")
    client.check_output(f"printf '%s' '{accounts}' > {workdir}/accounts.csv")
    argv = sipkit.sipp_command("uac_call", f"{proxy_ip}:5060", calls=100000, rate=RATE, hold_ms=HOLD_MS,
                               inf="accounts.csv", local_port=port - 3000, timeout_s=3600,
                               # no client retransmissions: on this busy 2-core box a late reply
                               # would make SIPp resend and trip over the duplicate answer; a
                               # lost packet now fails the call, which is the stricter test
                               extra=["-cp", str(port), "-fd", "5", "-nr"])
    client.check_output(f"cd {workdir} && (setsid {' '.join(argv)} >/dev/null 2>&1 &)")
    return workdir


def test_a_rerun_on_the_proxies_changes_nothing():
    """The scenario's idempotence check, at the release it starts from, on the two proxies (the
    scenario leaves out molecule's own step, which re-ran the database and the stand-ins too:
    opensips-db, full-stack and sipkit check those), before the upgrade below."""
    assert_rerun_changes_nothing(SCENARIO / "converge.yml", "sip_proxies", PROXIES)


@pytest.fixture(scope="module")
def upgrade_run(host):
    proxies = {name: other(name) for name in PROXIES}
    for name, (ip, _port, user) in PROXIES.items():
        reg = sipkit.run_sipp(host, "register_auth", f"{ip}:5060",
                              accounts=[sipkit.Account(user, DOMAIN, PASSWORDS[user])])
        assert reg.successful == 1, reg.summary()
    before = {name: set(location(p)) for name, p in proxies.items()}
    releases_before = {name: release(p) for name, p in proxies.items()}
    workdirs = [start_load(host, ip, port, user) for ip, port, user in PROXIES.values()]
    time.sleep(5)  # the load is flowing before anything is touched
    run = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(ROOT / "playbooks" / "upgrade.yml"),
         "-e", f"opensips_version={TARGET}",
         "-e", f"sip_upgrade_proxy_out_tasks={SCENARIO / 'hooks' / 'proxy-out.yml'}",
         "-e", f"sip_upgrade_proxy_in_tasks={SCENARIO / 'hooks' / 'proxy-in.yml'}",
         "-e", f"sip_upgrade_media_server_tasks={SCENARIO / 'hooks' / 'media-server.yml'}",
         "-e", "sip_upgrade_drain_timeout=120"],
        capture_output=True, text=True, check=False, env=os.environ)
    time.sleep(5)  # and keeps flowing through the upgraded edge
    # "q": SIPp stops placing calls, lets the ones up finish, writes its statistics and exits
    for _ip, port, _user in PROXIES.values():
        host.run(f"echo q > /dev/udp/127.0.0.1/{port}")
    deadline = time.monotonic() + 60
    while host.run("pgrep -f '[s]ipp .*-cp 889'").rc == 0 and time.monotonic() < deadline:
        time.sleep(1)
    stats = {}
    for workdir, name in zip(workdirs, PROXIES):
        text = host.run(f"cat {workdir}/stat.csv").stdout
        stats[name] = sipkit.parse_stat_csv(text) if text.strip() else {}
    return {"run": run, "before": before, "after": {name: set(location(p)) for name, p in proxies.items()},
            "releases_before": releases_before, "releases_after": {name: release(p) for name, p in proxies.items()},
            "stats": stats}


def test_upgrade_playbook_succeeds(upgrade_run):
    run = upgrade_run["run"]
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    for step in ("Mark it inactive in every proxy's dispatcher", "Wait until no proxy has a dialog to it",
                 "Take it out of rotation", "Wait until it has no active dialog",
                 "Health check - every registration from before the drain is still there", "Put it back into rotation"):
        assert step in run.stdout


def test_every_node_was_handled_one_at_a_time(upgrade_run):
    out = upgrade_run["run"].stdout
    order = [out.index(f"PLAY [{play}]") for play in ("Media servers, one at a time", "Proxies, one at a time")]
    assert order == sorted(order)
    # serial: 1 -> one "Take it out of rotation" (the opensips role's tasks_from: drain) per proxy,
    # each finished before the next
    assert out.count("opensips : Take it out of rotation") == len(PROXIES)  # TASK [sipedge.edge.opensips : ...]


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_no_call_failed_during_the_upgrade(upgrade_run, proxy):
    stats = upgrade_run["stats"][proxy]
    assert stats, f"no SIPp statistics for the load through {proxy}"
    successful, failed = int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])
    assert failed == 0, json.dumps(stats)[:2000]
    assert successful >= 10, json.dumps(stats)[:2000]   # the load really ran


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_every_registration_is_still_there(upgrade_run, proxy):
    assert upgrade_run["before"][proxy] <= upgrade_run["after"][proxy]
    assert PROXIES[proxy][2] in upgrade_run["after"][proxy]


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_proxies_run_the_target_release(upgrade_run, proxy):
    assert f"OpenSIPS ({TARGET}." in upgrade_run["releases_after"][proxy]


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_the_version_moved(upgrade_run, proxy):
    if FROM == TARGET:
        pytest.skip(f"the package source holds only {TARGET}: a rolling restart, no version bump "
                    "(add an older release to the mirror to test one)")
    assert f"OpenSIPS ({FROM}." in upgrade_run["releases_before"][proxy]
    assert f"OpenSIPS ({TARGET}." in upgrade_run["releases_after"][proxy]


def test_media_servers_are_active_again(upgrade_run):
    found = mi(other("upg-proxy1"), "ds_list")["PARTITIONS"][0]["SETS"][0]["Destinations"]
    assert {d["state"] for d in found} == {"Active"}, found


def test_each_proxy_keeps_its_dialogs_in_its_own_table(upgrade_run):
    """Proxies sharing the database restart without loading each other's live calls (the log
    gate holds the other half: no "Dialog in DB doesn't match any listening sockets")."""
    db = other("upg-db")
    cli = "mysql --defaults-file=/etc/mysql/opensips-db-admin.cnf -N -B opensips -e"
    for name in PROXIES:
        table = "dialog_" + name.replace("-", "_")
        assert f'modparam("dialog", "table_name", "{table}")' in other(name).file("/etc/opensips/opensips.cfg").content_string
        version = db.check_output(f"{cli} \"SELECT table_version FROM version WHERE table_name = '{table}'\"")
        assert version == db.check_output(f"{cli} \"SELECT table_version FROM version WHERE table_name = 'dialog'\"")
        # the same columns as the vendor's table
        columns = [db.check_output(f"{cli} \"SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM "
                                   f"information_schema.columns WHERE table_schema = 'opensips' AND table_name = '{t}'\"")
                   for t in (table, "dialog")]
        assert columns[0] == columns[1] and "callid" in columns[0], columns
