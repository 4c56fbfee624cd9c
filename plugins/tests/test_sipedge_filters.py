"""The shared filters: the rows both the db_text files and the MySQL tables are built from."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "filter"))

import sipedge_filters as f  # noqa: E402

SETS = [{"id": 1, "destinations": [
    {"uri": "sip:10.0.0.41:5060", "description": "fs1"},
    {"uri": "sip:10.0.0.42:5060", "weight": 2, "priority": 1, "state": "inactive"},
    {"uri": "sip:media.example.net:5060"},
]}]


def test_dispatcher_rows_carry_state_weight_and_priority():
    rows = f.opensips_dispatcher_rows(SETS)
    assert [(r["setid"], r["destination"], r["state"], r["weight"], r["priority"]) for r in rows] == [
        (1, "sip:10.0.0.41:5060", 0, "1", 0),
        (1, "sip:10.0.0.42:5060", 1, "2", 1),
        (1, "sip:media.example.net:5060", 0, "1", 0),
    ]
    assert rows[0]["socket"] is None and rows[0]["attrs"] == "" and rows[0]["description"] == "fs1"


def test_address_rows_add_media_servers_given_by_ip_only():
    rows = f.opensips_address_rows([{"address": "192.0.2.7", "description": "carrier"},
                                    {"address": "2001:db8::1"}], SETS)
    assert [(r["ip"], r["mask"], r["port"], r["proto"]) for r in rows] == [
        ("192.0.2.7", 32, 0, "any"), ("2001:db8::1", 128, 0, "any"),
        ("10.0.0.41", 32, 5060, "udp"), ("10.0.0.42", 32, 5060, "udp"),
    ]
    assert all(len(r["context_info"]) <= 32 for r in rows)
    # carriers are trusted on any socket (group 1), media servers on the core side only (group 2)
    assert [r["grp"] for r in rows] == [1, 1, 2, 2]


def test_media_servers_are_trusted_by_transport_and_port():
    sets = [{"id": 1, "destinations": [
        {"uri": "sip:10.0.0.41:5080"}, {"uri": "sip:10.0.0.41"}, {"uri": "sip:10.0.0.41:5080"},
        {"uri": "sip:10.0.0.43:5060;transport=tcp"}, {"uri": "sips:[2001:db8::5]"},
    ]}]
    rows = f.opensips_address_rows([], sets)
    assert [(r["ip"], r["port"], r["proto"]) for r in rows] == [
        ("10.0.0.41", 5080, "udp"), ("10.0.0.41", 5060, "udp"),
        ("10.0.0.43", 0, "tcp"), ("2001:db8::5", 0, "tls"),
    ]
    assert [f.sip_uri_port(u) for u in ("sip:a.example:5070", "sip:a.example", "sips:a.example")] == [5070, 5060, 5061]


def test_explicit_trusted_source_wins_over_the_derived_one():
    rows = f.opensips_address_rows([{"address": "10.0.0.41", "mask": 24, "description": "fs subnet"}], SETS)
    assert [(r["ip"], r["mask"]) for r in rows] == [("10.0.0.41", 24), ("10.0.0.42", 32)]


def test_good_subscribers_have_no_errors():
    subs = [{"username": "1001", "domain": "sip.example.com", "password": "s3cret"},
            {"username": "alice.o", "domain": "192.0.2.10", "password": "x"},
            {"username": "1099", "domain": "sip.example.com", "state": "absent"}]
    assert f.sip_subscriber_errors(subs) == []


def test_subscriber_errors_name_the_entry_and_never_the_password():
    subs = [{"username": "1001", "domain": "sip.example.com", "password": "first-secret"},
            {"username": "1001", "domain": "SIP.example.com", "password": "second-secret"},
            {"username": "1002", "domain": "sip.example.com"},
            {"username": "1003", "domain": "not a domain", "password": "third-secret"},
            {"domain": "sip.example.com", "password": "x"}]
    errors = f.sip_subscriber_errors(subs)
    assert errors == [
        "1001@SIP.example.com: listed twice",
        "1002@sip.example.com: password missing",
        "1003@not a domain: domain 'not a domain' is not a valid host name or IP address",
        "entry 4: username missing or not a valid SIP user part",
    ]
    assert not any("secret" in e for e in errors)


def test_plaintext_column_limit_is_checked_only_when_plaintext_is_kept():
    subs = [{"username": "1001", "domain": "sip.example.com", "password": "p" * 30}]
    assert f.sip_subscriber_errors(subs) == []
    assert f.sip_subscriber_errors(subs, True) == [
        "1001@sip.example.com: password longer than the 25 characters of the plaintext column"]


def test_ip_in_networks_matches_by_family():
    assert f.ip_in_networks("10.1.2.3", ["192.168.0.0/16", "10.0.0.0/8"])
    assert not f.ip_in_networks("10.1.2.3", ["192.168.0.0/16", "fd00::/8"])
    assert f.ip_in_networks("fd00::5", ["fd00::/8"])
    assert not f.ip_in_networks("not-an-ip", ["0.0.0.0/0"])


def test_invalid_networks_lists_only_the_bad_ones():
    assert f.invalid_networks(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "10.0.0.999/33", "lan"]) == ["10.0.0.999/33", "lan"]


def test_socket_rules_map_stream_transports_to_tcp():
    sockets = [{"proto": "udp", "port": 5060}, {"proto": "tls", "port": "5061"},
               {"proto": "wss", "port": 7443, "sources": ["10.0.0.0/8"]}]
    assert f.opensips_socket_rules(sockets) == [
        {"name": "opensips udp 5060", "proto": "udp", "port": 5060, "sources": []},
        {"name": "opensips tls 5061", "proto": "tcp", "port": 5061, "sources": []},
        {"name": "opensips wss 7443", "proto": "tcp", "port": 7443, "sources": ["10.0.0.0/8"]},
    ]


# --- rolling upgrades: which destinations are a host, which dialogs go to it ----------

UPGRADE_SETS = [{"id": 1, "destinations": [{"uri": "sip:10.210.0.41:5060"}, {"uri": "sip:10.210.0.42:5060"}]},
        {"id": 2, "destinations": [{"uri": "sip:[2001:db8::42]:5060"}, {"uri": "sip:fs3.example.net"}]}]


def test_destinations_at_finds_every_set_of_a_host():
    assert f.opensips_destinations_at(UPGRADE_SETS, ["10.210.0.42", "2001:db8::42"]) == [
        {"set": 1, "uri": "sip:10.210.0.42:5060"}, {"set": 2, "uri": "sip:[2001:db8::42]:5060"}]
    assert f.opensips_destinations_at(UPGRADE_SETS, ["FS3.example.net"]) == [{"set": 2, "uri": "sip:fs3.example.net"}]
    assert f.opensips_destinations_at(UPGRADE_SETS, ["10.9.9.9", None]) == []


def test_dialogs_towards_counts_a_real_dlg_list():
    """dlg_list captured from OpenSIPS 3.6.8 with two calls up, both answered by 10.210.0.41/42."""
    dlg = json.loads((Path(__file__).parent / "fixtures" / "dlg_list-3.6.8.json").read_text())
    callees = [c["callee_contact"] for d in dlg["Dialogs"] for c in d["CALLEES"]]
    expected = {a: sum(f"@{a}:" in c for c in callees) for a in ("10.210.0.41", "10.210.0.42")}
    assert sum(expected.values()) == len(dlg["Dialogs"]) >= 1
    for address, count in expected.items():
        assert f.opensips_dialogs_towards(dlg, [address]) == count
    assert f.opensips_dialogs_towards(dlg, ["10.210.0.41", "10.210.0.42"]) == len(dlg["Dialogs"])
    assert f.opensips_dialogs_towards(dlg, ["10.210.0.99"]) == 0
    assert f.opensips_dialogs_towards({"Dialogs": []}, ["10.210.0.41"]) == 0


DIALOGS = {"Dialogs": [
    {"ID": "a.1", "state": 1, "CALLEES": []},                                   # INVITE just sent
    {"ID": "b.2", "state": 2, "CALLEES": [{"callee_contact": ""}]},             # ringing, 180 without Contact
    {"ID": "c.3", "state": 2, "CALLEES": [{"callee_contact": "sip:media@10.210.0.42:5060"}]},
    {"ID": "d.4", "state": 4, "CALLEES": [{"callee_contact": "sip:media@10.210.0.41:5060"}]},
    {"ID": "e.5", "state": 5, "CALLEES": [{"callee_contact": "sip:media@10.210.0.41:5060"}]},  # deleted
]}


def test_unanswered_dialogs_are_the_live_ones_without_a_callee_contact():
    assert f.opensips_unanswered_dialogs(DIALOGS) == ["a.1", "b.2"]


def test_unanswered_dialogs_count_unless_only_the_pending_ones_are_asked_for():
    assert f.opensips_dialogs_towards(DIALOGS, ["10.210.0.41"]) == 3            # d.4 + a.1 + b.2
    assert f.opensips_dialogs_towards(DIALOGS, ["10.210.0.41"], ["b.2"]) == 2   # d.4 + b.2
    assert f.opensips_dialogs_towards(DIALOGS, ["10.210.0.41"], []) == 1        # d.4
    assert f.opensips_dialogs_towards(DIALOGS, ["10.210.0.42"], []) == 1        # c.3



def test_parent_dirs_lists_each_parent_once_parents_first():
    assert f.sip_parent_dirs(["opensips.cfg", "dbtext/version", "dbtext/address", "a/b/c.conf"]) == ["dbtext", "a", "a/b"]
    assert f.sip_parent_dirs([]) == []


def test_each_proxy_has_its_own_dialog_table_and_a_safe_name():
    assert f.sip_dialog_table("lab-proxy1") == "dialog_lab_proxy1"
    assert f.sip_dialog_table("sip1.prod.example.net") == "dialog_sip1_prod_example_net"
    # nothing that SQL would need quoted, and never longer than MySQL's 64
    assert f.sip_dialog_table("x`; DROP TABLE acc; --") == "dialog_x___DROP_TABLE_acc____"
    long_a, long_b = f.sip_dialog_table("a" * 80 + "1"), f.sip_dialog_table("a" * 80 + "2")
    assert len(long_a) == len(long_b) == 64 and long_a != long_b


def test_a_pair_also_sends_from_its_floating_address_after_its_own():
    hostvars = {"p1": {"sip_internal_address": "10.0.0.10", "sip_floating_address": "10.0.0.50"},
                "p2": {"sip_internal_address": "10.0.0.11", "sip_floating_address": "10.0.0.50"},
                "db": {"sip_internal_address": "10.0.0.20"}}
    assert f.sip_host_addresses(["p1", "p2", "db"], hostvars) == ["10.0.0.10", "10.0.0.50", "10.0.0.11", "10.0.0.20"]
    # a node's own address stays first (the cluster's proto_bin address)
    assert f.sip_host_addresses(["p2"], hostvars, False)[0] == "10.0.0.11"
    bad = {"p1": {"sip_internal_address": "10.0.0.10", "sip_floating_address": "not-an-ip"}}
    assert f.sip_host_address_entries(["p1"], bad)["errors"] == ["p1: sip_floating_address 'not-an-ip' is not an IPv4/IPv6 address"]


def test_a_two_network_pair_sends_to_the_core_from_its_internal_floating_address_only():
    hostvars = {"p1": {"sip_internal_address": "10.0.0.10", "sip_public_address": "198.51.100.10",
                       "sip_floating_address": "198.51.100.50", "sip_floating_internal_address": "10.0.0.50"}}
    # the media servers trust the core side's floating address, never the phones' one
    assert f.sip_host_addresses(["p1"], hostvars) == ["10.0.0.10", "10.0.0.50"]


def test_the_one_address_of_a_service_host():
    hostvars = {"db1": {"sip_internal_address": ["10.0.0.20", "2001:db8::20"]},
                "db2": {"ansible_host": "db2.mgmt.example.net"},
                "db3": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.22"},
                                          "default_ipv6": {"address": "2001:db8::22"}}}}
    assert f.sip_host_address("db1", hostvars) == "10.0.0.20"
    # no address known: the management name, as the connection uses it
    assert f.sip_host_address("db2", hostvars) == "db2.mgmt.example.net"
    assert f.sip_host_address("db3", hostvars) == "10.0.0.22"
    # a server outside the inventory is used as given
    assert f.sip_host_address("mysql.example.net", hostvars) == "mysql.example.net"
