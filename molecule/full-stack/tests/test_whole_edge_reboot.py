"""Every host of the edge restarted (docker stop/start: what a reboot does to a container; the database
host first, then all the others at once), the last module of the scenario (file order): each one boots
with its firewall table and nobody else's flushed, names still resolve, the proxy reaches the database
at its internal address, REGISTER and calls work again through the proxy and the relay, and a rerun of
the playbook changes nothing on any host."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from opensips_checks import other, recap_changed, run_playbook
from stack import PROXY
from test_full_stack import DB_CLI, account, call, register, wait_for

testinfra_hosts = ["ansible://stack-proxy"]

SCENARIO = Path(__file__).resolve().parents[1]
EDGE = ("stack-db", "stack-relay", "stack-proxy", "stack-fs1", "stack-fs2")  # the hosts with a firewall
HOSTS = EDGE + ("stack-client", "stack-client2")


def booted(name: str) -> str:
    state = ""
    for _ in range(90):
        state = other(name).run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(2)
    return state


@pytest.fixture(scope="module")
def rebooted():
    tables = {name: set(other(name).check_output("nft list tables").split("\n")) for name in EDGE}
    # Every other host stopped, the database host restarted and answering, then the others started
    # at once: the proxy never runs against a database that is down. Were MariaDB down as the proxy
    # stops, usrloc's and dialog's last writes (each opens a connection in its destroy function) would
    # fail and leave ended dialogs' rows behind; down while the proxy runs, usrloc's write-back timer
    # would fail. Both log at ERROR: races of the order the hosts go down in, not the behaviour under
    # test (the cluster scenario kills a database node under load on purpose).
    rest = [name for name in HOSTS if name != "stack-db"]
    subprocess.run(["docker", "stop", "-t", "30", *rest], check=True, capture_output=True, timeout=300)
    subprocess.run(["docker", "restart", "-t", "30", "stack-db"], check=True, capture_output=True, timeout=300)
    states = {"stack-db": booted("stack-db")}
    assert wait_for(lambda: other("stack-db").run(f'{DB_CLI} -e "SELECT 1"').rc == 0, timeout=60), \
        "MariaDB did not come back"
    subprocess.run(["docker", "start", *rest], check=True, capture_output=True, timeout=300)
    return {"states": {**states, **{name: booted(name) for name in rest}}, "tables": tables}


def test_every_host_finished_booting(host, rebooted):
    assert all(state in ("running", "degraded") for state in rebooted["states"].values()), rebooted["states"]
    for name in EDGE:
        after = set(other(name).check_output("nft list tables").split("\n"))
        # the firewall's own table is back, and every table there before (the runtime's DNS) as well
        assert rebooted["tables"][name] <= after, (name, rebooted["tables"][name] - after)


def test_every_service_came_back(host, rebooted):
    units = {"stack-db": ["mariadb", "sipedge-firewall"], "stack-relay": ["rtpengine-daemon", "sipedge-firewall"],
             "stack-proxy": ["opensips", "sipedge-firewall"], "stack-fs1": ["sipkit-uas-media", "sipedge-firewall"],
             "stack-fs2": ["sipkit-uas-media", "sipedge-firewall"]}
    for name, names in units.items():
        for unit in names:
            state = wait_for(lambda: other(name).run(f"systemctl is-active {unit}").stdout.strip() == "active", timeout=60)
            assert state, f"{name}: {unit} is not active after the reboot"


def test_registers_and_calls_work_after_the_reboot(host, rebooted, lab):
    client = other("stack-client")
    # the proxy booted on its own (its unit, after the firewall) and reaches the database
    reg = None
    for _ in range(15):
        reg = register(client, account(lab, 0))
        if reg.successful == 1:
            break
        time.sleep(2)
    assert reg.successful == 1, reg.summary()
    result = None
    for _ in range(10):  # the probes mark the media servers up again within a few seconds
        result = call(client, account(lab, 1), calls=2, rate=2, hold_ms=200)
        if result.successful == 2:
            break
        time.sleep(3)
    assert (result.rc, result.successful, result.failed) == (0, 2, 0), result.summary()
    assert PROXY in result.command


def test_a_rerun_after_the_reboot_changes_nothing(host, rebooted):
    run = run_playbook(SCENARIO / "converge.yml", None)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    for name in HOSTS:
        assert recap_changed(run.stdout, name) == 0, (name, run.stdout[-6000:])
