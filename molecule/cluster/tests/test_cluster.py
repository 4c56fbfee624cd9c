"""Two OpenSIPS proxies as one cluster (opensips_cluster_mode active-active): each sees the other over
proto_bin, a registration through one is in both, a call through the other proxy reaches the phone,
a restarted node takes the registrations back from its peer, and only the peer reaches the
replication port."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import sipkit
from opensips_checks import assert_rerun_changes_nothing, contacts_of, keep_figures, mi, other, wait_for

testinfra_hosts = ["ansible://clu-proxy1"]

PROXY1, PROXY2 = "10.210.65.10", "10.210.65.11"
CLIENT = "10.210.65.100"
DOMAIN = "clu.sipedge.test"
CALLEE_PORT = 5075
SCENARIO = Path(__file__).resolve().parents[1]


def account(user: str, password: str, callee: str = "9000") -> sipkit.Account:
    return sipkit.Account(user, DOMAIN, password, callee)


CALLEE = account("1001", "clu-1001-pw")
CALLER = account("1002", "clu-1002-pw", callee="1001")



def peer_states(proxy, field: str = "link_state") -> dict[int, str]:
    """Each peer's link state (or another field of MI clusterer_list, such as its "state")."""
    clusters = mi(proxy, "clusterer_list")["Clusters"]
    return {n["node_id"]: n[field] for c in clusters for n in c["Nodes"]}


@pytest.fixture(scope="module")
def proxies():
    return {"clu-proxy1": other("clu-proxy1"), "clu-proxy2": other("clu-proxy2")}


@pytest.fixture(scope="module")
def client():
    return other("clu-client")


def test_a_rerun_on_the_proxies_changes_nothing():
    """The scenario's idempotence check for the active-active cluster, on the proxies. The scenario
    leaves out molecule's own step (a rerun of every host): the Galera nodes and the media server
    are re-run, changed=0 required, after the switch to a pair (test_floating_address)."""
    assert_rerun_changes_nothing(SCENARIO / "converge.yml", "sip_proxies", ("clu-proxy1", "clu-proxy2"))


# A ping reply later than ping_timeout (2 s; a loaded 2-core box during the converge's restarts) takes
# the link down after its retries, and clusterer pings a node it holds down again only after its
# node_timeout (60 s): the link is Up within that, plus a ping interval.
LINK_UP_S = 60 + 2 * 4 + 10


def test_each_node_sees_its_peer_up(host, proxies):
    for name, peer in (("clu-proxy1", 2), ("clu-proxy2", 1)):
        assert wait_for(lambda n=name, p=peer: peer_states(proxies[n]) == {p: "Up"}, timeout=LINK_UP_S), \
            (name, peer_states(proxies[name]))


@pytest.fixture(scope="module")
def registered(host, proxies, client):
    """1001 registers through proxy 1, at a SIPp UAS on the phone."""
    for proxy in proxies.values():
        mi(proxy, "ul_rm", {"table_name": "location", "aor": CALLEE.user})
    reg = sipkit.run_sipp(client, "register_auth", f"{PROXY1}:5060", accounts=[CALLEE], local_port=CALLEE_PORT)
    assert reg.successful == 1, reg.summary()
    return f"sip:{CALLEE.user}@{CLIENT}:{CALLEE_PORT}"


def test_a_registration_through_one_node_is_on_both(host, proxies, registered):
    assert any(registered in c for c in contacts_of(proxies["clu-proxy1"], CALLEE.user))
    assert wait_for(lambda: any(registered in c for c in contacts_of(proxies["clu-proxy2"], CALLEE.user)), timeout=10), \
        contacts_of(proxies["clu-proxy2"], CALLEE.user)


def call_reaches_phone(client, via: str, phone_port: int) -> None:
    """CALLER calls 1001 through ``via``: a one-call UAS answers at the phone's registered port, and
    the INVITE it gets came through ``via``."""
    workdir = f"/tmp/clu-phone-{phone_port}"
    client.run(f"pkill -f '[s]ipp -sf .* -p {phone_port}'; rm -rf {workdir}; mkdir -p {workdir}")
    client.check_output(f"cd {workdir} && (sipp -sf {sipkit.SCENARIO_DIR}/uas_media_server.xml -i {CLIENT} "
                        f"-p {phone_port} -m 1 -nostdin -trace_msg -message_file messages.log >/dev/null 2>&1 &); sleep 1")
    result = sipkit.run_sipp(client, "uac_call", f"{via}:5060", accounts=[CALLER], hold_ms=1000)
    assert (result.rc, result.successful, result.failed) == (0, 1, 0), result.summary()
    log = client.run(f"cat {workdir}/messages.log").stdout
    assert "INVITE sip:1001@" in log and f"Via: SIP/2.0/UDP {via}" in log, log[-3000:]


def test_a_call_through_the_other_node_reaches_the_phone(host, proxies, client, registered):
    call_reaches_phone(client, PROXY2, CALLEE_PORT)


def test_the_replication_port_is_open_to_the_peer_only(host, proxies, client):
    probe = "timeout 3 bash -c '</dev/tcp/{}/5566'"
    assert proxies["clu-proxy2"].run(probe.format(PROXY1)).rc == 0
    assert client.run(probe.format(PROXY1)).rc != 0


def test_a_restarted_node_takes_the_registrations_back_from_its_peer(host, proxies, registered):
    proxy2 = proxies["clu-proxy2"]
    proxy2.check_output("systemctl restart opensips")
    # full sharing keeps registrations in memory: they come back from node 1, not from SQL
    assert wait_for(lambda: proxy2.run("systemctl is-active opensips").stdout.strip() == "active", timeout=30)
    found = wait_for(lambda: any(registered in c for c in contacts_of(proxy2, CALLEE.user)), timeout=30, step=2)
    assert found, contacts_of(proxy2, CALLEE.user)
    assert wait_for(lambda: peer_states(proxy2) == {1: "Up"}, timeout=30), peer_states(proxy2)


# How long after MI clusterer_set_status ... 1 a link is Up: a ping and its pong (2 s at most, on a
# loaded box), or clusterer's ping race (see opensips-cluster-links): the watch restarts the pinging
# after 15 s in "Probe", plus its 5 s between looks and its MI calls, then a ping (27 s by hand, once
# in 30 cycles beside two busy loops). Each cycle may hit the race: 10 cycles.
RELINK_S = 45
RELINK_CYCLES = 10


def watchers(proxy) -> list[str]:
    """The pids of the running opensips-cluster-links --watch whose cgroup is OpenSIPS's unit."""
    pids = proxy.run("pgrep -f '^/usr/bin/python3 /usr/local/sbin/opensips-cluster-links --watch'").stdout.split()
    return [pid for pid in pids if "opensips.service" in proxy.run(f"cat /proc/{pid}/cgroup").stdout]


def test_the_link_watch_restarts_a_stuck_link_and_leaves_a_disabled_peer_alone(host, proxies):
    """opensips-cluster-links runs with OpenSIPS (one watch, in the unit's cgroup) and restarts the
    pinging of a link clusterer left in "Probe"; its one-shot wait (the undrain step) leaves a peer
    the operator disabled alone. The race cannot be provoked on demand: each of RELINK_CYCLES
    disable/enable cycles (what an operator does by MI) may hit it, and every one must end Up."""
    proxy1 = proxies["clu-proxy1"]
    assert "opensips-cluster-links --watch" in proxy1.check_output("systemctl show opensips -p ExecStartPost")
    assert len(watchers(proxy1)) == 1, proxy1.run("ps -eo pid,args").stdout
    healthy = proxy1.run("/usr/local/sbin/opensips-cluster-links --timeout 20")
    assert healthy.rc == 0 and json.loads(healthy.stdout)["links"] == {"2": ["enabled", "Up"]}, healthy.stdout
    since = proxy1.check_output("date '+%Y-%m-%d %H:%M:%S'")
    mi(proxy1, "clusterer_set_status", {"cluster_id": 1, "node_id": 2, "status": 0})
    try:
        left = proxy1.run("/usr/local/sbin/opensips-cluster-links --timeout 5 --grace 1")
        assert left.rc == 0, left.stdout
        assert peer_states(proxy1, "state") == {2: "disabled"}
    finally:
        mi(proxy1, "clusterer_set_status", {"cluster_id": 1, "node_id": 2, "status": 1})
    assert wait_for(lambda: peer_states(proxy1) == {2: "Up"}, timeout=RELINK_S), peer_states(proxy1)
    relinked = []
    for _ in range(RELINK_CYCLES):
        mi(proxy1, "clusterer_set_status", {"cluster_id": 1, "node_id": 2, "status": 0})
        mi(proxy1, "clusterer_set_status", {"cluster_id": 1, "node_id": 2, "status": 1})
        started = time.monotonic()
        assert wait_for(lambda: peer_states(proxy1) == {2: "Up"}, timeout=RELINK_S, step=0.5), \
            (relinked, peer_states(proxy1))
        relinked.append(round(time.monotonic() - started, 1))
    restarted = proxy1.run(f"journalctl -q --no-pager -t opensips-cluster-links --since '{since}'").stdout
    keep_figures("cluster", "link-watch", {"relinked_s": relinked, "pinging_restarted": restarted.count("restarting")})
    assert len(watchers(proxy1)) == 1, proxy1.run("ps -eo pid,args").stdout


def test_every_node_renders_its_own_id_and_the_other_as_neighbour(host, proxies):
    for name, own, peer, peer_id in (("clu-proxy1", 1, PROXY2, 2), ("clu-proxy2", 2, PROXY1, 1)):
        cfg = proxies[name].file("/etc/opensips/opensips.cfg").content_string
        assert f'modparam("clusterer", "my_node_id", {own})' in cfg, name
        assert f"node_id={peer_id}, url=bin:{peer}:5566" in cfg, name
    status = json.dumps(mi(proxies["clu-proxy1"], "clusterer_list"))
    assert "bin:10.210.65.11:5566" in status
