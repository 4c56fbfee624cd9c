"""Rendering matrix of the opensips role: feature toggles x releases, each file
rendered by the role's own templates and checked by the real `opensips -C` of
that release where one is reachable (SKIPPED with the reason otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import opensips_oracle
import opensips_source

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).with_name("render_matrix.yml")
VERSIONS = opensips_source.supported_versions()  # the role's own list (roles/opensips/vars/main.yml)

TWO_MEDIA_SERVERS = [{"id": 1, "destinations": [
    {"uri": "sip:10.0.0.41:5060", "weight": 1, "priority": 0, "description": "fs1: primary"},
    {"uri": "sip:[2001:db8::42]:5060", "weight": 2, "priority": 1, "state": "probing", "attrs": "site=b"},
]}]

VARIANTS = {
    "minimal": {
        "opensips_database_enabled": False, "opensips_auth_enabled": False,
        "opensips_usrloc_working_mode": "single-instance-no-db", "opensips_pike_enabled": False,
        "opensips_sanity_enabled": False, "opensips_dialog_enabled": False, "opensips_acc_enabled": False,
        "opensips_mi_http_enabled": False, "opensips_prometheus_enabled": False,
    },
    "registrar-auth-nat": {
        "opensips_sockets": [{"proto": "udp", "port": 5060, "advertise": "203.0.113.5"}, {"proto": "tcp", "port": 5060}],
        "opensips_nat_enabled": True, "opensips_dispatcher_algorithm": "hash-callid",
        "opensips_trusted_sources": [{"address": "198.51.100.7", "description": "carrier: trunk"}],
    },
    "rtpengine-tls-webrtc": {
        "opensips_sockets": [{"proto": "udp", "port": 5060}, {"proto": "tls", "port": 5061},
                             {"proto": "ws", "port": 5066}, {"proto": "wss", "port": 7443}],
        "opensips_media_relay": "rtpengine", "opensips_webrtc_enabled": True,
    },
    "rtpproxy-db-backends": {
        "opensips_media_relay": "rtpproxy", "opensips_dispatcher_backend": "db",
        "opensips_trusted_backend": "db", "opensips_dispatcher_algorithm": "random",
    },
    # two networks: phones on the public address, media servers (one over tcp) from the internal one
    "multi-homed": {
        "opensips_listen_address": "203.0.113.10", "opensips_internal_address": "10.0.0.10",
        "opensips_sockets": [{"proto": "udp", "port": 5060}, {"proto": "tcp", "port": 5060}, {"proto": "tls", "port": 5061}],
        "opensips_media_relay": "rtpengine", "opensips_rtpengine_bridge": {"public": "pub", "core": "core"},
        "opensips_dispatcher_sets": [{"id": 1, "destinations": [
            {"uri": "sip:10.0.0.41:5080"}, {"uri": "sip:10.0.0.42:5080;transport=tcp"}]}],
    },
    # a cloud instance behind 1:1 NAT: one address, phone sockets advertised, the core on its own port
    "cloud-nat": {
        "opensips_listen_address": "10.0.0.10", "opensips_internal_address": "10.0.0.10", "opensips_internal_port": 5070,
        "opensips_sockets": [{"proto": "udp", "port": 5060, "advertise": "203.0.113.10"},
                             {"proto": "tcp", "port": 5060, "advertise": "203.0.113.10"}],
        "opensips_media_relay": "rtpengine", "opensips_rtpengine_bridge": {"public": "public", "core": "core"},
    },
    # a pair behind a floating address, node 1 of 2, and three nodes behind DNS SRV
    "cluster-active-backup": {
        "opensips_listen_address": "203.0.113.10", "opensips_internal_address": "10.0.0.10",
        "opensips_cluster_mode": "active-backup", "opensips_cluster_node_id": 1,
        "opensips_cluster_nodes": [{"id": 1, "host": "localhost", "address": "10.0.0.10"},
                                   {"id": 2, "host": "sip2", "address": "10.0.0.11"}],
    },
    "cluster-active-active": {
        "opensips_listen_address": "203.0.113.12", "opensips_internal_address": "10.0.0.12",
        "opensips_database_enabled": False, "opensips_auth_enabled": False,
        "opensips_cluster_mode": "active-active", "opensips_cluster_node_id": 3,
        "opensips_cluster_nodes": [{"id": 1, "host": "sip1", "address": "10.0.0.10"},
                                   {"id": 2, "host": "sip2", "address": "10.0.0.11"},
                                   {"id": 3, "host": "localhost", "address": "10.0.0.12"}],
    },
    # RTPProxy in bridge mode between the two sides
    "rtpproxy-bridge": {
        "opensips_listen_address": "203.0.113.10", "opensips_internal_address": "10.0.0.10",
        "opensips_media_relay": "rtpproxy", "opensips_rtpproxy_bridge": True,
    },
    # started for real (no database, loopback only) to prove the tables load
    "table-load": {
        "opensips_listen_address": "127.0.0.1",
        "opensips_database_enabled": False, "opensips_auth_enabled": False,
        "opensips_usrloc_working_mode": "single-instance-no-db",
        "opensips_dispatcher_ping_interval": 0,
    },
    # metrics on every address for the Prometheus server, call statistics, pike exemptions
    "monitoring": {
        "opensips_prometheus_sources": ["10.0.0.5/32"], "opensips_pike_exempt_networks": ["10.0.0.100", "2001:db8::/64"],
        "opensips_call_statistics_interval": 2,
    },
    "site-snippets": {
        "opensips_custom_snippets": {
            "global": 'loadmodule "textops.so"',
            "request": 'if (is_method("PUBLISH")) {\n\tsend_reply(405, "Not Allowed");\n\texit;\n}',
            "relay": 'xlog("L_INFO", "relaying $rm to $ru\\n");',
            "routes": 'route[site_extra] {\n\txlog("L_INFO", "site route\\n");\n}',
        },
    },
}

# What our seed documents got wrong; the real parser must refuse each.
SEED_MISTAKES = {
    "seed-list-file": ('modparam("dispatcher", "list_file", "/etc/opensips/dispatcher.list")', "list_file"),
    "seed-flags": ('modparam("dispatcher", "flags", 2)', "flags"),
    "seed-maxfwd": (None, "mf_process_maxfwd"),
}


def variants():
    out = []
    for version in VERSIONS:
        for name, extra in VARIANTS.items():
            out.append({"name": f"{version}-{name}", "vars": {"opensips_version": version,
                                                              "opensips_dispatcher_sets": TWO_MEDIA_SERVERS, **extra}})
    for name, (global_snippet, _) in SEED_MISTAKES.items():
        snippets = {"global": global_snippet} if global_snippet else {"request": "if (!mf_process_maxfwd(10)) { exit; }"}
        out.append({"name": name, "vars": {"opensips_version": "3.6", "opensips_dispatcher_sets": TWO_MEDIA_SERVERS,
                                           "opensips_custom_snippets": snippets}})
    return out


def ansible_playbook_argv(*args: str) -> tuple[list[str], dict]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1"}
    binary = Path(sys.executable).with_name("ansible-playbook")
    command = str(binary) if binary.exists() else shutil.which("ansible-playbook") or "ansible-playbook"
    return [command, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", *args], env


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    argv, env = ansible_playbook_argv(*args)
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Every variant rendered by the role's own render task; the matrix is split over one
    ansible-playbook per CPU (the run is the unit stage's longest)."""
    root = tmp_path_factory.mktemp("rendered")
    every = variants()
    parts = max(1, min(os.cpu_count() or 1, 4))
    runs = []
    for i in range(parts):
        matrix = root / f"matrix-{i}.json"
        matrix.write_text(json.dumps({"opensips_matrix": every[i::parts], "render_root": str(root)}))
        argv, env = ansible_playbook_argv(str(PLAYBOOK), "-e", f"@{matrix}")
        runs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env))
    for run in runs:
        out, err = run.communicate()
        assert run.returncode == 0, out[-4000:] + err[-2000:]
    return root


@pytest.fixture(scope="session")
def oracles():
    found = {}

    def oracle_for(version):
        # one oracle (container) per release for the whole session, closed below
        if version not in found:
            found[version] = opensips_oracle.find(version)
        return found[version]

    yield oracle_for
    for oracle, _ in found.values():
        if oracle:
            oracle.close()


def oracle_or_skip(oracles, version):
    oracle, reason = oracles(version)
    if oracle is None:
        pytest.skip(f"SKIPPED: {reason}")
    return oracle


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_cfg_passes_the_real_parser(rendered, oracles, version, variant):
    cfg = rendered / f"{version}-{variant}" / "opensips.cfg"
    assert cfg.is_file()
    oracle = oracle_or_skip(oracles, version)
    rc, output = oracle.check(cfg)
    assert rc == 0, f"opensips -C ({oracle.where}) refused {cfg}:\n{output[-3000:]}"


@pytest.mark.parametrize("case", SEED_MISTAKES)
def test_seed_mistakes_are_refused_by_the_real_parser(rendered, oracles, case):
    oracle = oracle_or_skip(oracles, "3.6")
    rc, output = oracle.check(rendered / case / "opensips.cfg")
    assert rc != 0, f"opensips -C accepted the seed's {SEED_MISTAKES[case][1]}:\n{output[-2000:]}"


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_tables_load_in_the_real_opensips(rendered, oracles, version):
    """db_text tables can't be checked by -C: start the release on them and ask ds_list."""
    oracle = oracle_or_skip(oracles, version)
    if not hasattr(oracle, "serve"):
        pytest.skip(f"SKIPPED: starting OpenSIPS {version} needs its image ({oracle.where} has none)")
    variant = rendered / f"{version}-table-load"
    reply, log = oracle.serve(variant / "opensips.cfg", variant / "dbtext", "ds_list")
    assert reply is not None and "result" in reply, f"OpenSIPS {version} on the rendered tables: {reply}\n{log[-3000:]}"
    found = {d["URI"]: d for s in reply["result"]["PARTITIONS"][0]["SETS"] for d in s["Destinations"]}
    assert set(found) == {"sip:10.0.0.41:5060", "sip:[2001:db8::42]:5060"}, reply
    assert found["sip:10.0.0.41:5060"]["state"] == "Active"
    assert found["sip:10.0.0.41:5060"]["description"] == "fs1: primary"
    assert found["sip:[2001:db8::42]:5060"]["state"] == "Probing"
    assert found["sip:[2001:db8::42]:5060"]["weight"] == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_call_statistics_exist_from_the_start(rendered, oracles, version):
    """The counters the dashboard charts exist at zero once the real release has run the
    rendered startup route."""
    oracle = oracle_or_skip(oracles, version)
    if not hasattr(oracle, "serve"):
        pytest.skip(f"SKIPPED: starting OpenSIPS {version} needs its image ({oracle.where} has none)")
    variant = rendered / f"{version}-table-load"
    names = ["sipedge:calls_ended_total", "sipedge:call_duration_seconds_total"]
    reply, log = oracle.serve(variant / "opensips.cfg", variant / "dbtext", "get_statistics",
                              params={"statistics": ["sipedge:"]},
                              ready=lambda r: all(n in r.get("result", {}) for n in names))
    assert reply is not None and "result" in reply, f"OpenSIPS {version}: {reply}\n{log[-3000:]}"
    stats = reply["result"]
    assert stats["sipedge:calls_ended_total"] == 0 and stats["sipedge:call_duration_seconds_total"] == 0, stats


def test_the_config_does_not_depend_on_the_destinations(rendered):
    """Metrics name destinations at run time: a dispatcher change is a table reload, never a
    new opensips.cfg (which would restart the proxy)."""
    cfg = (rendered / "3.6-monitoring" / "opensips.cfg").read_text()
    assert "10.0.0.41" not in cfg and "2001:db8::42" not in cfg and "fs1: primary" not in cfg
    assert 'modparam("httpd", "ip", "0.0.0.0")' in cfg
    assert '/^calls_to_(.*)$/calls_to_media_server:destination=\\"\\1\\"/' in cfg
    assert "$(si{ip.matches,10.0.0.100/32})" in cfg and "$(si{ip.matches,2001:db8::/64})" in cfg
    default = (rendered / "3.6-registrar-auth-nat" / "opensips.cfg").read_text()
    assert 'modparam("httpd", "ip", "127.0.0.1")' in default


def test_dispatcher_table_escapes_uris_and_maps_states(rendered):
    lines = (rendered / "3.6-minimal" / "dbtext" / "dispatcher").read_text().splitlines()
    assert lines[0].startswith("id(int,auto) setid(int) destination(string) socket(string,null) state(int)")
    assert lines[1] == r"1:1:sip\:10.0.0.41\:5060::0:0:1:0::fs1\: primary"
    assert lines[2] == r"2:1:sip\:[2001\:db8\:\:42]\:5060::2:0:2:1:site=b:"
    assert len(lines) == 3


def test_version_file_declares_the_table_versions(rendered):
    text = (rendered / "3.6-minimal" / "dbtext" / "version").read_text()
    assert "dispatcher:9" in text.splitlines()
    assert "address:5" in text.splitlines()


def test_media_servers_are_trusted_by_address(rendered):
    rows = (rendered / "3.6-registrar-auth-nat" / "dbtext" / "address").read_text().splitlines()[1:]
    assert rows[0] == r"1:1:198.51.100.7:32:0:any::carrier\: trunk"
    # media servers: address, transport and the port of their URI, in group 2 (trusted on the core side only)
    assert rows[1] == "2:2:10.0.0.41:32:5060:udp::media server (dispatcher set 1)"
    assert rows[2] == r"3:2:2001\:db8\:\:42:128:5060:udp::media server (dispatcher set 1)"
    assert len(rows) == 3


def test_features_switch_modules_on_and_off(rendered):
    minimal = (rendered / "3.6-minimal" / "opensips.cfg").read_text()
    full = (rendered / "3.6-rtpengine-tls-webrtc" / "opensips.cfg").read_text()
    for module in ("auth_db.so", "db_mysql.so", "pike.so", "acc.so", "dialog.so", "httpd.so", "rtpengine.so"):
        assert f'loadmodule "{module}"' not in minimal
    for module in ("auth_db.so", "signaling.so", "rtpengine.so", "proto_wss.so", "tls_mgm.so", "prometheus.so"):
        assert f'loadmodule "{module}"' in full
    assert "socket=wss:192.0.2.10:7443" in full
    assert "list_file" not in full and "mf_process_maxfwd(" not in full


def test_edge_defences_are_rendered(rendered):
    cfg = (rendered / "3.6-monitoring" / "opensips.cfg").read_text()
    assert 'server_header="Server: sipedge"' in cfg and 'user_agent_header="User-Agent: sipedge"' in cfg
    assert 'modparam("dialog", "dlg_match_mode", 0)' in cfg and 'modparam("dialog", "db_mode", 2)' in cfg
    assert 'modparam("registrar", "max_contacts", 5)' in cfg
    assert "$DLG_status == NULL" in cfg and 'remove_hf("P-Asserted-Identity")' in cfg
    assert 'cache_fetch("local", "authban_$si"' in cfg
    # metrics are published on 0.0.0.0 here: no MI on that listener, the FIFO serves the toolkit
    assert 'loadmodule "mi_http.so"' not in cfg and 'loadmodule "prometheus.so"' in cfg
    assert 'modparam("mi_fifo", "reply_dir", "/run/opensips/")' in cfg


def test_advertised_address_is_rendered(rendered):
    cfg = (rendered / "3.6-registrar-auth-nat" / "opensips.cfg").read_text()
    assert "socket=udp:192.0.2.10:5060 as 203.0.113.5:5060" in cfg


def test_a_cloud_proxy_keeps_its_core_side_on_its_own_port(rendered):
    """1:1 NAT: the phones' sockets advertise the public address; the core side is the same address
    on opensips_internal_port, advertising nothing, and what goes to the media servers leaves from it."""
    cfg = (rendered / "3.6-cloud-nat" / "opensips.cfg").read_text()
    assert "socket=udp:10.0.0.10:5060 as 203.0.113.10:5060" in cfg
    assert "\nsocket=udp:10.0.0.10:5070\n" in cfg and "\nsocket=tcp:10.0.0.10:5070\n" in cfg
    assert 'force_send_socket("udp:10.0.0.10:5070");' in cfg
    assert 'modparam("dispatcher", "ds_probing_sock", "udp:10.0.0.10:5070")' in cfg
    # a bridging relay: the core side is told from the public one by address and port
    assert 'if ($socket_in(ip) == "10.0.0.10" && $socket_in(port) == 5070)' in cfg
    # the media servers (address group 2) are trusted on that socket only
    assert 'else if ($socket_in(ip) == "10.0.0.10" && $socket_in(port) == 5070 && check_source_address(2))' in cfg
    assert "in-iface=$var(media_in) out-iface=$var(media_out)" in cfg


def test_a_multi_homed_proxy_names_each_offers_direction(rendered):
    cfg = (rendered / "3.6-multi-homed" / "opensips.cfg").read_text()
    assert '$var(media_in) = "pub";' in cfg and '$var(media_out) = "core";' in cfg
    assert 'modparam("dispatcher", "ds_probing_sock", "udp:10.0.0.10:5060")' in cfg
    # no bridge without a relay that bridges
    assert "in-iface" not in (rendered / "3.6-rtpengine-tls-webrtc" / "opensips.cfg").read_text()


def test_a_bridging_rtpproxy_gets_the_direction_of_offer_and_answer(rendered):
    cfg = (rendered / "3.6-rtpproxy-bridge" / "opensips.cfg").read_text()
    assert 'rtpproxy_offer("ros$avp(media_in)$avp(media_out)")' in cfg
    assert 'rtpproxy_answer("ros$avp(media_out)$avp(media_in)")' in cfg
    assert 'if ($socket_in(ip) == "10.0.0.10" && $socket_in(port) == 5060)' in cfg
    assert 'rtpproxy_offer("ro")' in (rendered / "3.6-rtpproxy-db-backends" / "opensips.cfg").read_text()


def test_a_cluster_pair_replicates_and_follows_its_floating_address(rendered):
    cfg = (rendered / "3.6-cluster-active-backup" / "opensips.cfg").read_text()
    assert "\nsocket=bin:10.0.0.10:5566\n" in cfg
    assert 'modparam("clusterer", "my_node_id", 1)' in cfg
    assert 'modparam("clusterer", "neighbor_node_info", "cluster_id=1, node_id=2, url=bin:10.0.0.11:5566")' in cfg
    assert 'modparam("clusterer", "sharing_tag", "vip/1=backup")' in cfg
    assert 'modparam("usrloc", "working_mode_preset", "full-sharing-cluster")' in cfg
    assert 'modparam("dialog", "dialog_replication_cluster", 1)' in cfg and 'set_dlg_sharing_tag("vip");' in cfg
    assert 'modparam("dispatcher", "cluster_probing_mode", "by-shtag")' in cfg
    # registrations live in the cluster, not in SQL
    assert 'modparam("usrloc", "db_url"' not in cfg
    other = (rendered / "3.6-cluster-active-active" / "opensips.cfg").read_text()
    assert 'modparam("usrloc", "working_mode_preset", "full-sharing-cluster")' in other
    assert other.count('"neighbor_node_info"') == 2 and "sharing_tag" not in other
    # behind DNS SRV a dialog stays on its node (its Record-Route names it): profiles are shared, dialogs not
    assert '"profile_replication_cluster", 1' in other and "dialog_replication_cluster" not in other


def test_db_password_is_url_encoded(rendered):
    cfg = (rendered / "3.6-registrar-auth-nat" / "opensips.cfg").read_text()
    assert "mysql://opensips:s3cret%3Awith%40odd%2Fchars@192.0.2.20:3306/opensips" in cfg


BAD_INPUT = {
    "duplicate-socket": ({"opensips_sockets": [{"proto": "udp", "port": 5060}, {"proto": "udp", "port": 5060}]},
                         "opensips_sockets: duplicate socket"),
    "wss-without-certificate": ({"opensips_sockets": [{"proto": "wss", "port": 7443}]}, "opensips_tls_certificate"),
    "not-a-sip-uri": ({"opensips_dispatcher_sets": [{"id": 1, "destinations": [{"uri": "http://10.0.0.1"}]}]},
                      "opensips_dispatcher_sets[1]"),
    "webrtc-without-rtpengine": ({"opensips_webrtc_enabled": True}, "opensips_webrtc_enabled needs opensips_media_relay"),
    "port-out-of-range": ({"opensips_sockets": [{"proto": "udp", "port": 70000}]}, "opensips_sockets"),
    "prometheus-source-not-a-network": ({"opensips_prometheus_sources": ["monitoring.example.net"]},
                                        "opensips_prometheus_sources must be IP networks (bad: ['monitoring.example.net']"),
    "pike-exempt-not-a-network": ({"opensips_pike_exempt_networks": ["10.0.0.300"]},
                                  "opensips_pike_exempt_networks must be IP addresses or networks (bad: ['10.0.0.300']"),
    # MI/metrics moved off loopback (-e opensips_mi_http_address=0.0.0.0) with no network to allow
    "metrics-open-to-everyone": ({}, "or the firewall would open port 8888 to everyone"),
    "mi-beside-published-metrics": ({"opensips_prometheus_sources": ["10.0.0.5/32"], "opensips_mi_http_enabled": True},
                                    "opensips_mi_http_enabled would serve MI"),
    "server-header-with-newline": ({"opensips_server_header": "edge\r\nX-Injected: 1"}, "opensips_server_header"),
    "dialog-db-without-database": ({"opensips_database_enabled": False, "opensips_auth_enabled": False,
                                    "opensips_usrloc_working_mode": "single-instance-no-db",
                                    "opensips_dialog_db_mode": "delayed"}, "needs opensips_database_enabled"),
    "load-algorithm-removed": ({"opensips_dispatcher_algorithm": "load"}, "opensips_dispatcher_algorithm must be one of"),
    # no relay exported its socket (e.g. --limit without the relays): no guess at 127.0.0.1
    "rtpengine-without-socket": ({"opensips_media_relay": "rtpengine", "opensips_rtpengine_socket": ""},
                                 "opensips_rtpengine_socket is empty: with opensips_media_relay rtpengine"),
    # a bridge tells the core side by the internal socket: without one it cannot
    "bridge-without-internal-address": ({"opensips_media_relay": "rtpengine", "opensips_rtpengine_socket": "udp:10.0.0.30:2223",
                                         "opensips_rtpengine_bridge": {"public": "public", "core": "core"}},
                                        "opensips_rtpengine_bridge is"),
    "cluster-without-internal-address": ({"opensips_cluster_mode": "active-active"},
                                         "a cluster needs opensips_internal_address"),
    "rtpproxy-bridge-without-internal-address": ({"opensips_media_relay": "rtpproxy", "opensips_rtpproxy_bridge": True},
                                                 "opensips_rtpproxy_bridge is true"),
    # the core must not be told the phones' advertised address
    "core-shares-an-advertised-socket": ({"opensips_internal_address": "192.0.2.10",
                                          "opensips_sockets": [{"proto": "udp", "port": 5060, "advertise": "203.0.113.5"}]},
                                         "may advertise another address"),
    "rtpproxy-socket-not-a-socket": ({"opensips_media_relay": "rtpproxy", "opensips_rtpproxy_socket": "relay1:7722"},
                                     "opensips_rtpproxy_socket is relay1:7722"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_before_rendering_and_names_the_variable(tmp_path, case):
    extra, message = BAD_INPUT[case]
    base = {"opensips_version": "3.6", "opensips_dispatcher_sets": TWO_MEDIA_SERVERS}
    variables = {**base, **extra}
    matrix = tmp_path / "m.json"
    matrix.write_text(json.dumps({"opensips_matrix": [{"name": case, "vars": variables}], "render_root": str(tmp_path)}))
    args = ["-e", f"@{matrix}"]
    if case == "wss-without-certificate":
        args += ["-e", "opensips_tls_certificate=''"]
    if case == "metrics-open-to-everyone":
        args += ["-e", "opensips_mi_http_address=0.0.0.0"]
    run = ansible_playbook(str(PLAYBOOK), *args)
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-3000:]
    assert not (tmp_path / case / "opensips.cfg").exists()
