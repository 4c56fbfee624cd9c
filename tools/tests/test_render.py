"""Render-only mode (playbooks/render.yml) against the example inventories: the
roles' own templates, rendered on the controller from the inventory alone, and
nothing run against a host."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

import run_tests

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "render.yml"
VAULT = ROOT / "inventories" / "DEMO-vault-password.txt"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
EDGE_GROUPS = ["sip_db", "media_relays", "sip_proxies", "media_servers"]
FILES = {
    "sip_db": {"server.cnf", "sipedge.nft"},
    "media_relays": {"rtpengine.conf", "sipedge.nft"},
    "sip_proxies": {"opensips.cfg", "opensips.default", "dbtext/dispatcher", "dbtext/address", "dbtext/version",
                    "sipedge.nft"},
    "media_servers": {"acl.conf.xml", "sipedge.nft"},
}
# ... and with a pair behind floating addresses (keepalived and the hooks), or a Galera database
PAIR_FILES = {"keepalived.conf", "sipedge-vip-notify", "opensips-floating.sh", "opensips-floating.conf"}
GALERA_FILES = {"galera.cnf", "opensips-db-ready"}
DB_VIP_FILES = {"keepalived.conf", "sipedge-vip-notify"}
# any cluster of packaged proxies: the watch of the clusterer links and its systemd drop-in
CLUSTER_FILES = {"opensips-cluster-links", "opensips-cluster-links.conf"}
# The modules a render runs, all on this machine: files (template is copy/stat/file), the
# listing, and sip_tls's checks of the vault's certificate and key. No setup (facts).
LOCAL_MODULES = {"file", "copy", "stat", "find", "x509_certificate_info", "openssl_privatekey_info"}
# Not rendered output, written by Python or pytest themselves. make test's own logs and
# durations (run_tests.LOGS, run_tests.DURATIONS), written by the scenarios that run beside
# the unit tests, are left out by path.
NOT_OURS = {".git", ".venv", ".pytest_cache", "__pycache__", ".ansible", ".cache"}


def ansible_render(inventory: str | list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    """render.yml at -vvv: the log names every connection made and every module run."""
    inventories = [inventory] if isinstance(inventory, str) else inventory
    argv = [str(ANSIBLE_PLAYBOOK) if ANSIBLE_PLAYBOOK.exists() else "ansible-playbook", "-vvv"]
    for inv in inventories:
        argv += ["-i", str(inv if Path(inv).is_absolute() else ROOT / "inventories" / inv)]
    argv += [str(PLAYBOOK), "--vault-password-file", str(VAULT), "-e", f"sip_render_dir={out}", *extra]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, env=env, timeout=900)


def inventory(env: str) -> dict[str, dict[str, dict]]:
    """group -> host -> the host's variables in hosts.yml."""
    data = yaml.safe_load((ROOT / "inventories" / env / "hosts.yml").read_text())
    return {group: {host: hv or {} for host, hv in body["hosts"].items()} for group, body in data["all"]["children"].items()}


def group_vars(env: str, group: str) -> dict:
    return yaml.safe_load((ROOT / "inventories" / env / "group_vars" / group / "main.yml").read_text())


def pair(env: str) -> dict:
    """The proxies' floating addresses when they are an active-backup pair: {public, core}; else {}."""
    pv = group_vars(env, "sip_proxies")
    if not pv.get("sip_floating_address"):
        return {}
    return {"public": pv["sip_floating_address"], "core": pv.get("sip_floating_internal_address") or pv["sip_floating_address"]}


def cluster(env: str) -> bool:
    """The proxies are a cluster (the examples install from packages: the watch's drop-in too)."""
    return group_vars(env, "sip_proxies").get("opensips_cluster_mode", "none") != "none"


def galera(env: str) -> bool:
    return bool(group_vars(env, "all").get("sip_db_galera"))


def db_address(env: str) -> str:
    """The database's floating address (a Galera cluster's), or ''."""
    return group_vars(env, "all").get("sip_db_floating_address", "")


def core_address(env: str, hv: dict) -> str:
    """Where the media servers reach this proxy: the pair's core floating address, else its own."""
    return pair(env).get("core", hv["sip_internal_address"])


def core_sources(env: str) -> list[str]:
    """Every address the proxies send to the core from: each node's own, then the pair's floating one."""
    out = []
    for hv in inventory(env)["sip_proxies"].values():
        for address in (hv["sip_internal_address"], pair(env).get("core")):
            if address and address not in out:
                out.append(address)
    return out


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root (but the tooling's own caches): path -> (size, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in NOT_OURS and Path(dirpath, d) != run_tests.LOGS]
        for name in filenames:
            if not name.endswith(".pyc") and Path(dirpath, name) != run_tests.DURATIONS:
                st = (Path(dirpath) / name).stat()
                out[str(Path(dirpath, name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["production", "staging"])
def rendered(request, tmp_path_factory):
    env = request.param
    box = tmp_path_factory.mktemp(f"render-{env}")
    out = box / "rendered"
    before = tree(ROOT)
    run = ansible_render(env, out)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    return {"env": env, "out": out, "box": box, "run": run, "repo_before": before, "repo_after": tree(ROOT)}


def test_every_host_gets_its_files_and_only_those(rendered):
    env, out = rendered["env"], rendered["out"]
    inv = inventory(env)
    assert sorted(p.name for p in out.iterdir()) == sorted(h for g in EDGE_GROUPS for h in inv[g])
    extra = {"sip_proxies": (PAIR_FILES if pair(env) else set()) | (CLUSTER_FILES if cluster(env) else set()),
             "sip_db": (GALERA_FILES if galera(env) else set()) | (DB_VIP_FILES if db_address(env) else set())}
    for group in EDGE_GROUPS:
        for host in inv[group]:
            found = {str(p.relative_to(out / host)) for p in (out / host).rglob("*") if p.is_file()}
            assert found == FILES[group] | extra.get(group, set()), host


def test_files_are_private(rendered):
    out = rendered["out"]
    for path in [out, *out.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_nothing_is_written_outside_the_render_dir(rendered):
    assert [p.name for p in rendered["box"].iterdir()] == ["rendered"]
    assert rendered["repo_after"] == rendered["repo_before"]


def test_no_host_is_contacted(rendered):
    log = rendered["run"].stdout
    assert "Gathering Facts" not in log
    # every connection and command of the run is this machine's own
    assert set(re.findall(r"^<([^>]+)> (?:ESTABLISH|EXEC|PUT)", log, re.M)) == {"localhost"}
    assert set(re.findall(r"^<localhost> ESTABLISH (\w+) CONNECTION", log, re.M)) == {"LOCAL"}
    modules = {Path(m).stem for m in re.findall(r"^Using module file (\S+)", log, re.M)}
    assert modules and modules <= LOCAL_MODULES, modules - LOCAL_MODULES


INTERNAL_NETWORKS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                                       "100.64.0.0/10", "fc00::/7", "::1/128")]


def internal(address: str) -> bool:
    """An address the internet cannot reach (RFC 1918, CGNAT, loopback, ULA)."""
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in INTERNAL_NETWORKS)


def test_each_proxy_listens_on_its_own_address(rendered):
    env, out = rendered["env"], rendered["out"]
    inv = inventory(env)
    proxy_vars = group_vars(env, "sip_proxies")
    sockets = proxy_vars["opensips_sockets"]
    core_port = str(proxy_vars.get("opensips_internal_port", 5060))
    relays = sorted(f"udp:{hv['sip_internal_address']}:2223" for hv in inv["media_relays"].values())
    dbs = [hv["sip_internal_address"] for hv in inv["sip_db"].values()]
    floating = pair(env)
    for host, hv in inv["sip_proxies"].items():
        cfg = (out / host / "opensips.cfg").read_text()
        listening = re.findall(r"^socket=(\w+):([^:\s]+):(\d+)(?: as ([^:\s]+):\d+)?$", cfg, re.M)
        # production: the phone side binds the public address (a multi-homed host), a pair's
        # floating one; staging: the internal one, advertised as the public address (1:1 NAT). The
        # core side (opensips_internal_address: a pair's core floating address) listens on udp and
        # tcp for the media servers, advertising nothing; a pair replicates over its own address.
        phone_bind = hv["sip_internal_address"] if "advertise" in sockets[0] else floating.get("public", hv["sip_public_address"])
        expected = [(s["proto"], phone_bind, str(s["port"]), hv["sip_public_address"] if "advertise" in s else "")
                    for s in sockets]
        core = core_address(env, hv)
        expected += [(proto, core, core_port, "") for proto in ("udp", "tcp")]
        if floating:
            expected.append(("bin", hv["sip_internal_address"], "5566", ""))
        assert sorted(listening) == sorted(expected)
        # every phone-facing socket shows a public address to the phones
        phone_facing = [advertised or addr for proto, addr, port, advertised in listening
                        if (addr, port) != (core, core_port) and proto != "bin"]
        assert phone_facing and not any(internal(addr) for addr in phone_facing), phone_facing
        assert f'"rtpengine_sock", "{" ".join(relays)}"' in cfg
        # the database by its internal address, never a management name: a Galera cluster's
        # floating address, else the one server's
        db = db_address(env) or dbs[0]
        urls = set(re.findall(r'"db_url", "mysql://opensips:[^@"]+@([^:"]+):3306/opensips"', cfg))
        assert urls == {db}, urls
        assert "/usr/lib/x86_64-linux-gnu/opensips/modules/" in cfg


def test_proxies_sharing_the_database_keep_their_dialogs_apart(rendered):
    """Each proxy names its own dialog table; a shared one made a restarted proxy read the other's calls.
    A pair keeps none: its dialogs are replicated to the peer instead."""
    env, out = rendered["env"], rendered["out"]
    tables = {}
    for host in inventory(env)["sip_proxies"]:
        cfg = (out / host / "opensips.cfg").read_text()
        found = re.findall(r'^modparam\("dialog", "table_name", "([^"]+)"\)$', cfg, re.M)
        if pair(env):
            assert found == [] and 'modparam("dialog", "db_url"' not in cfg and '"dialog_replication_cluster"' in cfg, host
            continue
        assert len(found) == 1, (host, found)
        tables[host] = found[0]
    assert pair(env) or (tables and len(set(tables.values())) == len(tables)), tables
    assert all(re.fullmatch(r"dialog_[A-Za-z0-9_]{1,57}", t) for t in tables.values()), tables


def test_each_offer_names_its_side_of_the_bridging_relay(rendered):
    """Phones see only the relay's public side and media servers only its core side: each relay has
    both interfaces, the public one showing a public address, and every offer names its direction."""
    env, out = rendered["env"], rendered["out"]
    inv = inventory(env)
    for host, hv in inv["media_relays"].items():
        conf = (out / host / "rtpengine.conf").read_text()
        interfaces = dict(re.findall(r"([\w.-]+)/([^;\s]+)", re.search(r"^interface = (.*)$", conf, re.M).group(1)))
        public_side = interfaces["public"].split("!")[-1]
        assert public_side == hv["sip_public_address"] and not internal(public_side), interfaces
        assert interfaces["core"] == hv["sip_internal_address"], interfaces
    for host, hv in inv["sip_proxies"].items():
        cfg = (out / host / "opensips.cfg").read_text()
        offers = re.findall(r'rtpengine_offer\("([^"]*)"\)', cfg)
        assert offers and all("in-iface=$var(media_in) out-iface=$var(media_out)" in o for o in offers), offers
        assert f'if ($socket_in(ip) == "{core_address(env, hv)}"' in cfg
        assert f'if ($socket_out(ip) == "{core_address(env, hv)}"' in cfg


def test_every_media_server_admits_the_address_each_proxy_sends_from(rendered):
    """The source of every request a proxy sends to the media servers (force_send_socket, its internal socket)
    is in each FreeSWITCH server's ACL and is allowed to its SIP port by its firewall."""
    env, out = rendered["env"], rendered["out"]
    sources = {}
    for host in inventory(env)["sip_proxies"]:
        cfg = (out / host / "opensips.cfg").read_text()
        sent_from = set(re.findall(r"^\s*force_send_socket\(\"(?:udp|tcp):([^:\"]+):\d+\"\);", cfg, re.M))
        assert len(sent_from) == 1, (host, sent_from)
        sources[host] = ipaddress.ip_address(sent_from.pop())
        assert re.search(rf"^socket=udp:{re.escape(str(sources[host]))}:\d+$", cfg, re.M), host
    for fs in inventory(env)["media_servers"]:
        acl = ET.parse(out / fs / "acl.conf.xml").getroot()
        trusted = [ipaddress.ip_network(n.get("cidr")) for n in acl.iter("node") if n.get("cidr") and n.get("type") == "allow"]
        nft = (out / fs / "sipedge.nft").read_text()
        sip_rule = next(line for line in nft.splitlines() if "freeswitch sip" in line and "saddr" in line)
        for proxy, ip in sources.items():
            assert any(ip in net for net in trusted), f"{fs}'s ACL does not trust {proxy} ({ip})"
            allowed = [ipaddress.ip_network(n.strip()) for n in re.search(r"saddr \{([^}]*)\}", sip_rule).group(1).split(",")]
            assert any(ip in net for net in allowed), f"{fs}'s firewall drops SIP from {proxy} ({ip})"


def test_dispatcher_lists_the_inventory_media_servers(rendered):
    env, out = rendered["env"], rendered["out"]
    media = sorted(f"sip:{hv['sip_internal_address']}:5080" for hv in inventory(env)["media_servers"].values())
    for host in inventory(env)["sip_proxies"]:
        header, *rows = (out / host / "dbtext" / "dispatcher").read_text().splitlines()
        assert header.startswith("id(int,auto) setid(int) destination(string)")
        # db_text escapes ':' in values
        destinations = [re.split(r"(?<!\\):", row)[2].replace("\\:", ":") for row in rows if row.strip()]
        assert sorted(destinations) == media


def test_acl_lists_exactly_the_proxies(rendered):
    env, out = rendered["env"], rendered["out"]
    proxies = sorted(f"{address}/32" for address in core_sources(env))
    for host in inventory(env)["media_servers"]:
        root = ET.parse(out / host / "acl.conf.xml").getroot()
        ours = root.findall("./network-lists/list[@name='opensips_proxies']")
        assert len(ours) == 1 and ours[0].get("default") == "deny"
        assert sorted(n.get("cidr") for n in ours[0].findall("node[@type='allow']")) == proxies
        assert not ours[0].findall("node[@type='deny']")


def test_the_relays_rtp_range_is_opened_on_the_relays_only(rendered):
    env, out = rendered["env"], rendered["out"]
    inv, relay_vars = inventory(env), group_vars(env, "media_relays")
    low, high = relay_vars["rtpengine_port_min"], relay_vars["rtpengine_port_max"]
    proxies = ", ".join(core_sources(env))
    for host in inv["media_relays"]:
        conf = (out / host / "rtpengine.conf").read_text()
        assert re.search(rf"^port-min = {low}$", conf, re.M) and re.search(rf"^port-max = {high}$", conf, re.M)
        nft = (out / host / "sipedge.nft").read_text()
        assert f'udp dport {low}-{high} accept comment "rtpengine RTP/RTCP"' in nft
        assert f"ip saddr {{ {proxies} }} udp dport 2223 accept" in nft
    for group in ("sip_db", "sip_proxies", "media_servers"):
        for host in inv[group]:
            nft = (out / host / "sipedge.nft").read_text()
            assert f"dport {low}-{high}" not in nft and 'comment "rtpengine' not in nft, host


def test_the_database_listens_on_its_internal_address(rendered):
    """One server: on its internal address. Galera nodes behind a floating address: on every address (the
    floating one moves), with MySQL open to the proxies alone and VRRP and Galera to the other nodes alone."""
    env, out = rendered["env"], rendered["out"]
    inv = inventory(env)
    proxies = {a for hv in inv["sip_proxies"].values() for a in (hv["sip_internal_address"], pair(env).get("core")) if a}
    for host, hv in inv["sip_db"].items():
        server = (out / host / "server.cnf").read_text()
        if not db_address(env):
            assert f"bind-address = {hv['sip_internal_address']}\n" in server
            continue
        assert "bind-address = 0.0.0.0\n" in server
        nft = (out / host / "sipedge.nft").read_text()
        peers = {p["sip_internal_address"] for name, p in inv["sip_db"].items() if name != host}
        mysql = re.search(r"ip saddr \{([^}]*)\} tcp dport 3306 accept", nft)
        assert mysql and {a.strip() for a in mysql.group(1).split(",")} == proxies, nft
        for match in ("meta l4proto 112", "tcp dport 4567", "tcp dport 4568", "tcp dport 4444"):
            rule = re.search(rf"ip saddr \{{([^}}]*)\}} {match} accept", nft)
            assert rule and {a.strip() for a in rule.group(1).split(",")} == peers, (host, match, nft)
        keepalived = (out / host / "keepalived.conf").read_text()
        assert f"{db_address(env)}/32 dev" in keepalived and "/usr/local/sbin/opensips-db-ready" in keepalived
        assert "virtual_router_id 52" in keepalived and "nopreempt" in keepalived


# One full render more per test: the richer example (a pair, Galera, two networks) is enough.
PRODUCTION_ONLY = pytest.mark.parametrize("rendered", ["production"], indirect=True)


@PRODUCTION_ONLY
def test_a_second_render_is_byte_identical(rendered, tmp_path):
    again = ansible_render(rendered["env"], tmp_path / "again")
    assert again.returncode == 0, (again.stdout + again.stderr)[-6000:]
    assert files_under(tmp_path / "again") == files_under(rendered["out"])


PROXY_FILES = FILES["sip_proxies"] - {"sipedge.nft"}  # the firewall is a layer of its own


@PRODUCTION_ONLY
@pytest.mark.parametrize("how", ["proxies.yml", "upgrade.yml", "--limit"])
def test_the_proxies_files_are_the_same_whichever_playbook_deploys_them(rendered, tmp_path, how):
    """proxies.yml alone, the proxy step of upgrade.yml and site.yml --limit one proxy (with the
    relays its socket comes from) write byte for byte what site.yml writes."""
    proxy = sorted(inventory(rendered["env"])["sip_proxies"])[0]
    extra = ["--limit", f"{proxy}:media_relays"] if how == "--limit" else ["-e", f"sip_render_playbook={how}"]
    if how == "upgrade.yml" and len(inventory(rendered["env"])["sip_proxies"]) == 1:
        extra += ["-e", "sip_upgrade_restart_window=true"]  # one proxy: the operator's explicit choice
    run = ansible_render(rendered["env"], tmp_path / "r", *extra)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    for host in inventory(rendered["env"])["sip_proxies"] if how != "--limit" else [proxy]:
        files = {k: v for k, v in files_under(tmp_path / "r" / host).items() if k in PROXY_FILES}
        assert set(files) == PROXY_FILES, host
        assert files == {k: v for k, v in files_under(rendered["out"] / host).items() if k in PROXY_FILES}, host


@PRODUCTION_ONLY
def test_the_firewall_layer_alone_writes_the_same_rules(rendered, tmp_path):
    """firewall.yml alone: the layers' exports (tasks_from: export) run first, so no port is lost."""
    run = ansible_render(rendered["env"], tmp_path / "r", "-e", "sip_render_playbook=firewall.yml")
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    hosts = [h for g in EDGE_GROUPS for h in inventory(rendered["env"])[g]]
    for host in hosts:
        assert (tmp_path / "r" / host / "sipedge.nft").read_bytes() == (rendered["out"] / host / "sipedge.nft").read_bytes(), host


def test_upgrading_a_single_proxy_without_a_way_to_drain_it_is_refused(tmp_path):
    """staging has one proxy and no sip_upgrade_proxy_out_tasks: upgrade.yml refuses before anything."""
    run = ansible_render("staging", tmp_path / "r", "-e", "sip_render_playbook=upgrade.yml")
    assert run.returncode != 0
    text = " ".join((run.stdout + run.stderr).split())
    assert "is the only proxy and sip_upgrade_proxy_out_tasks is empty" in text and "sip_upgrade_restart_window" in text
    assert not list((tmp_path / "r").rglob("opensips.cfg"))


def test_a_proxy_without_its_relay_fails_naming_the_socket(tmp_path):
    """--limit one proxy without the relays: no socket to read, and no guess (127.0.0.1)."""
    proxy = sorted(inventory("staging")["sip_proxies"])[0]
    run = ansible_render("staging", tmp_path / "r", "--limit", proxy)
    assert run.returncode != 0
    assert "opensips_rtpengine_socket" in run.stdout + run.stderr
    assert not (tmp_path / "r" / proxy / "opensips.cfg").exists()


@pytest.mark.parametrize("bad, variable, failing_group", [
    (["-e", "opensips_dispatcher_algorithm=nonsense"], "opensips_dispatcher_algorithm", "sip_proxies"),
    (["-e", "rtpengine_port_min=40000", "-e", "rtpengine_port_max=30000"], "rtpengine_port_min", "media_relays"),
    # a table name that would need quoting in SQL (or inject it)
    (["-e", '{"opensips_dialog_table": "dialog; DROP TABLE acc"}'], "opensips_dialog_table", "sip_proxies"),
])
def test_bad_input_fails_the_render_naming_the_variable(tmp_path, bad, variable, failing_group):
    out = tmp_path / "rendered"
    run = ansible_render("staging", out, *bad)
    assert run.returncode != 0
    assert variable in run.stdout + run.stderr
    for host in inventory("staging")[failing_group]:
        assert not (out / host).exists(), host
    # the render stops at the first failure: no firewall rendered for anybody
    assert not list(out.rglob("sipedge.nft"))


def test_a_pair_whose_media_servers_cannot_follow_the_floating_address_is_refused(tmp_path):
    """production's pair with its core side moved back to each node's own address (a careless edit of
    group_vars): the media servers would send their BYEs to a node's own address, lost when it dies.
    Refused by name, before any file is written."""
    careless = {"opensips_internal_address": "{{ sip_internal_address }}"}
    overlay = tmp_path / "pair.yml"
    overlay.write_text(json.dumps({"all": {"children": {"sip_proxies": {"hosts": {
        h: careless for h in inventory("production")["sip_proxies"]}}}}}))
    out = tmp_path / "rendered"
    run = ansible_render(["production", str(overlay)], out)
    assert run.returncode != 0
    text = " ".join(run.stdout.split())
    assert "opensips_internal_address (10.20.0.1" in text and "must be 10.20.0.50" in text, text[-3000:]
    # no proxy file at all (the database layer, rendered before, is not the proxies')
    assert not list(out.rglob("opensips.cfg"))
    assert not any((out / proxy).exists() for proxy in inventory("production")["sip_proxies"])


def test_a_cluster_without_opensips_cli_is_refused(tmp_path):
    """production's pair with opensips-cli turned off: nothing could watch the clusterer links."""
    out = tmp_path / "rendered"
    run = ansible_render("production", out, "-e", "opensips_cli_enabled=false")
    assert run.returncode != 0
    assert "needs opensips_cli_enabled: true" in " ".join(run.stdout.split()), run.stdout[-3000:]
    assert not list(out.rglob("opensips.cfg"))


@pytest.mark.parametrize("bad, variable", [
    # a bootstrap node outside the cluster would start a second cluster beside the first
    (["-e", "opensips_db_galera_bootstrap_node=db9.prod.example.net"], "opensips_db_galera_bootstrap_node (db9.prod.example.net)"),
    # the Galera ports must not collide with MySQL's (the firewall would open MySQL to the peers only)
    (["-e", "opensips_db_galera_sst_port=3306"], "four distinct ports"),
])
def test_a_careless_galera_setting_is_refused_naming_the_variable(tmp_path, bad, variable):
    out = tmp_path / "rendered"
    run = ansible_render("production", out, *bad)
    assert run.returncode != 0
    assert variable in " ".join(run.stdout.split()), run.stdout[-3000:]
    assert not list(out.rglob("galera.cnf"))


def test_a_host_without_an_address_fails_before_anything_is_written(tmp_path):
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"all": {"children": {"sip_proxies": {"hosts": {
        "sip9.stg.example.net": {"ansible_host": "sip9.stg.example.net"}}}}}}))
    out = tmp_path / "rendered"
    run = ansible_render(["staging", extra], out)
    assert run.returncode != 0
    assert "sip9.stg.example.net: set sip_internal_address" in " ".join(run.stdout.split())
    assert not out.exists()
