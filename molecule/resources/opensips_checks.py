"""Checks every OpenSIPS install method must pass, written once.

A scenario's test module imports them (``from opensips_checks import *``) and
provides an ``edge`` fixture (an :class:`Edge`). pytest collects the imported
``test_*`` functions in that module, so each scenario runs all of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import testinfra

import sipkit

__all__ = [
    "Edge", "mi", "push_script", "destinations", "other", "rendered_config", "real_parser_check", "recap_changed",
    "run_playbook", "assert_rerun_changes_nothing", "keep_figures",
    "test_opensips_runs_the_release_under_test", "test_listens_on_every_socket", "test_mi_stays_on_loopback",
    "test_mi_answers_which", "test_opensips_cli_talks_to_the_local_mi", "test_dispatcher_lists_the_rendered_destinations",
    "test_proxy_answers_options", "test_calls_reach_both_media_servers_round_robin",
    "test_a_rerun_on_the_proxy_changes_nothing",
    "test_changed_destination_is_reloaded_without_restart", "test_broken_snippet_fails_and_the_old_config_keeps_running",
]

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
# The scenario's whole inventory directory, as molecule's own converge reads it: the generated file
# plus what molecule.yml links there (a hosts file with host variables, group_vars).
INVENTORY_DIR = os.path.dirname(INVENTORY)


@dataclass
class Edge:
    proxy_name: str
    proxy_ip: str
    media: dict[str, str]          # media host name -> dispatcher URI
    client_name: str
    scenario_dir: Path
    process_id: Callable           # host -> identity of the running OpenSIPS (changes on restart)
    version_command: str           # prints `opensips -V` on the proxy host


def rendered_config(host_name: str) -> Path:
    """opensips.cfg that a scenario's converge rendered for ``host_name`` (opensips role, tasks_from render)."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "rendered" / host_name / "opensips.cfg"
    assert path.exists(), f"converge did not render {host_name}'s opensips.cfg"
    return path


def real_parser_check(cfg: Path) -> tuple[int, str]:
    """``opensips -C`` of the release under test on ``cfg``; SKIPPED when no OpenSIPS is reachable."""
    import opensips_oracle  # pylint: disable=import-outside-toplevel

    oracle, reason = opensips_oracle.find(os.environ.get("OPENSIPS_VERSION", "3.6"))
    if oracle is None:
        pytest.skip(reason)
    try:
        return oracle.check(cfg)
    finally:
        oracle.close()


def other(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


ROOT = Path(__file__).resolve().parents[2]
MI_CLIENT = ROOT / "plugins" / "module_utils" / "opensips_mi.py"


def push_script(host, script: Path) -> str:
    """Copy a standard-library Python script of the toolkit to ``host`` (once; named by its content) and
    return its path there."""
    data = script.read_bytes()
    target = f"/usr/local/lib/sipedge-{script.stem}-{hashlib.sha256(data).hexdigest()[:12]}.py"
    if host.run(f"test -f {target}").rc != 0:
        host.check_output(f"echo {base64.b64encode(data).decode()} | base64 -d > {target}")
    return target


def mi(host, method, params=None):
    """One MI command on the proxy over its local FIFO, with the toolkit's own client
    (plugins/module_utils/opensips_mi.py, the opensips_mi module's)."""
    args = f" '{json.dumps(params)}'" if params else ""
    out = host.run(f"python3 {push_script(host, MI_CLIENT)} {method}{args}")
    reply = json.loads(out.stdout)
    assert "error" not in reply, reply
    return reply["result"]


def wait_for(predicate, timeout: float, step: float = 1.0):
    """``predicate()``'s first true value within ``timeout`` seconds (polled every ``step``), else its
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def keep_figures(scenario: str, name: str, report: dict) -> None:
    """Print what a test measured and keep it with the scenario's logs (build/logs/<scenario>/<name>.json):
    the README's figures come from there."""
    print(f"{name.upper()} {report}")
    out = ROOT / "build" / "logs" / scenario
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")


def location(host, live_only: bool = True) -> dict[str, list[str]]:
    """The registrations in the proxy's memory (MI ul_dump): AOR -> its contacts' URIs.

    With a database in write-back mode, a contact removed (MI ul_rm, a REGISTER with expires 0) or
    expired after it was written stays in memory, marked "deleted"/"expired", until usrloc's next
    timer run (up to 60 s) removes it from memory and the table. No call reaches it: ``live_only``
    leaves it out (and an AOR with nothing else); ``live_only=False`` lists memory as usrloc's
    statistics count it."""
    table = {a["AOR"]: [c["Contact"] for c in a["Contacts"]
                        if not live_only or c.get("Expires") not in ("deleted", "expired")]
             for d in mi(host, "ul_dump")["Domains"] for a in d["AORs"]}
    return {aor: contacts for aor, contacts in table.items() if contacts or not live_only}


def contacts_of(host, user: str) -> list[str]:
    """The contacts registered for ``user`` (an AOR's user part, in any domain)."""
    return [c for aor, contacts in location(host).items() if aor.split("@")[0] == user for c in contacts]


def destinations(host):
    sets = mi(host, "ds_list", {"full": 1})["PARTITIONS"][0]["SETS"]
    return {d["URI"]: d for s in sets for d in s["Destinations"]}


def run_playbook(playbook: Path, limit: str | None, *extra_vars, inventories=()) -> subprocess.CompletedProcess:
    """A scenario's playbook against its inventory (plus ``inventories``), as an operator changing
    inventory would: ``--limit`` when given, each extra var a string or a dict (sent as JSON)."""
    args = ["ansible-playbook", "-i", INVENTORY_DIR or INVENTORY]
    for inv in inventories:
        args += ["-i", str(inv)]
    args.append(str(playbook))
    if limit:
        args += ["--limit", limit]
    for ev in extra_vars:
        args += ["-e", ev if isinstance(ev, str) else json.dumps(ev)]
    return subprocess.run(args, capture_output=True, text=True, check=False, env=os.environ)


def assert_rerun_changes_nothing(playbook: Path, limit: str, hosts) -> None:
    """A scenario's idempotence check on the hosts it is about: ``playbook`` again under ``--limit``,
    which must succeed and report changed=0 for each of ``hosts``."""
    run = run_playbook(playbook, limit)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    for name in hosts:
        assert recap_changed(run.stdout, name) == 0, (name, run.stdout[-4000:])


def converge(edge: Edge, *extra_vars: str) -> subprocess.CompletedProcess:
    """Re-run the scenario's converge playbook on the proxy, as an operator changing inventory would."""
    return run_playbook(edge.scenario_dir / "converge.yml", edge.proxy_name, *extra_vars)


def test_opensips_runs_the_release_under_test(host, edge):
    version = host.check_output(edge.version_command)
    assert f"opensips {os.environ.get('OPENSIPS_VERSION', '3.6')}." in version
    assert edge.process_id(host)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_listens_on_every_socket(host, edge, proto):
    assert host.socket(f"{proto}://{edge.proxy_ip}:5060").is_listening


def test_mi_stays_on_loopback(host, edge):
    assert host.socket("tcp://127.0.0.1:8888").is_listening
    assert not host.socket(f"tcp://{edge.proxy_ip}:8888").is_listening


def test_mi_answers_which(host):
    assert "ds_list" in mi(host, "which")


def test_opensips_cli_talks_to_the_local_mi(host):
    out = host.check_output("opensips-cli -x mi uptime")
    assert "Up time" in out or "Now" in out


def test_dispatcher_lists_the_rendered_destinations(host, edge):
    deadline = time.monotonic() + 20
    while True:
        found = destinations(host)
        if all(found.get(uri, {}).get("state") == "Active" for uri in edge.media.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(found) == set(edge.media.values())
    assert {d["state"] for d in found.values()} == {"Active"}


def test_proxy_answers_options(edge):
    result = sipkit.run_sipp(other(edge.client_name), "uac_options", f"{edge.proxy_ip}:5060", calls=2)
    assert (result.rc, result.successful) == (0, 2), result.summary()


def test_calls_reach_both_media_servers_round_robin(edge):
    caller = sipkit.Account("2001", "edge.sipedge.test", "", "5551000")
    before = {name: sipkit.uas_invites(other(name), "media") for name in edge.media}
    result = sipkit.run_sipp(other(edge.client_name), "uac_call", f"{edge.proxy_ip}:5060",
                             accounts=[caller], calls=6, rate=3, hold_ms=300)
    assert result.rc == 0, result.summary()
    assert (result.successful, result.failed) == (6, 0), result.summary()
    time.sleep(2)  # SIPp flushes the UAS call log on its own schedule
    got = {name: sipkit.uas_invites(other(name), "media") - before[name] for name in edge.media}
    assert got == dict.fromkeys(edge.media, 3)


def test_a_rerun_on_the_proxy_changes_nothing(host, edge):
    """The scenario's idempotence check, on the host its role deploys (the scenario leaves out
    molecule's own step, which re-ran the stand-ins' sipp role too: sipkit and full-stack check
    that one), before any test below changes the inventory."""
    pid = edge.process_id(host)
    assert_rerun_changes_nothing(edge.scenario_dir / "converge.yml", edge.proxy_name, [edge.proxy_name])
    assert edge.process_id(host) == pid


def test_changed_destination_is_reloaded_without_restart(host, edge):
    pid = edge.process_id(host)
    fs1, fs2 = sorted(edge.media)
    new_sets = json.dumps({"opensips_dispatcher_sets": [{"id": 1, "destinations": [
        {"uri": edge.media[fs1], "description": "fs1", "weight": 3},
        {"uri": edge.media[fs2], "description": "fs2 (drained)", "state": "inactive"},
    ]}]})
    run = converge(edge, new_sets)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "RUNNING HANDLER [opensips : Reload OpenSIPS tables]" in run.stdout
    assert edge.process_id(host) == pid
    found = destinations(host)
    assert found[edge.media[fs2]]["state"] == "Inactive"
    assert found[edge.media[fs2]]["description"] == "fs2 (drained)"
    assert found[edge.media[fs1]]["weight"] == 3
    # back to the inventory's list (fs2 active again), again without a restart
    run = converge(edge, json.dumps({"opensips_dispatcher_sets": [{"id": 1, "destinations": [
        {"uri": edge.media[fs1], "description": "fs1"},
        {"uri": edge.media[fs2], "description": "fs2", "state": "active"},
    ]}]}))
    assert run.returncode == 0, run.stdout[-3000:]
    assert edge.process_id(host) == pid
    assert destinations(host)[edge.media[fs2]]["state"] == "Active"


def test_broken_snippet_fails_and_the_old_config_keeps_running(host, edge):
    pid = edge.process_id(host)
    before = host.file("/etc/opensips/opensips.cfg").sha256sum
    broken = json.dumps({"opensips_custom_snippets": {"request": "if (!mf_process_maxfwd(10)) { exit; }"}})
    run = converge(edge, broken)
    assert run.returncode != 0
    assert "unknown command <mf_process_maxfwd>" in run.stdout + run.stderr, run.stdout[-3000:]
    assert host.file("/etc/opensips/opensips.cfg").sha256sum == before
    assert edge.process_id(host) == pid
    result = sipkit.run_sipp(other(edge.client_name), "uac_options", f"{edge.proxy_ip}:5060", calls=1)
    assert result.rc == 0, result.summary()


def recap_changed(stdout: str, host: str) -> int:
    """changed= of ``host`` in an ansible-playbook run's PLAY RECAP (which must show no failure)."""
    match = re.search(rf"{re.escape(host)}\s*:.*changed=(\d+).*failed=(\d+)", stdout)
    assert match, stdout[-2000:]
    assert match.group(2) == "0", stdout[-3000:]
    return int(match.group(1))
