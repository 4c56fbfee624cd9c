"""The shared address filters (plugins/filter/sipedge_filters.py), run on real values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "filter"))

import sipedge_filters as f  # noqa: E402


@pytest.mark.parametrize("address", [
    "10.0.0.1", "10.210.50.30", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "127.0.0.1", "::1", "fd00::1", "fc12:3456::7", "::ffff:192.168.0.5", "[fd00::2]",
])
def test_internal_addresses(address):
    assert f.is_internal(address) is True


@pytest.mark.parametrize("address", [
    "8.8.8.8", "172.32.0.1", "172.15.255.255", "203.0.113.30", "100.64.0.1", "169.254.1.1",
    "2001:4860:4860::8888", "fe80::1", "::ffff:8.8.8.8", "0.0.0.0", "::",
])
def test_public_or_unspecified_addresses_are_not_internal(address):
    assert f.is_internal(address) is False


@pytest.mark.parametrize("value", ["localhost", "relay.example.net", "10.0.0.0/8", "", None, "10.0.0.256"])
def test_non_addresses_are_neither_ip_nor_internal(value):
    assert f.is_ip(value) is False
    assert f.is_internal(value) is False


def test_ip_literals():
    assert f.is_ip("10.210.50.30")
    assert f.is_ip("2001:db8::1")


def test_invalid_networks_lists_only_the_bad_entries():
    values = ["10.210.50.10", "10.0.0.0/8", "fd00::/8", "proxy1", "10.0.0.0/33", "1.2.3"]
    assert f.invalid_networks(values) == ["proxy1", "10.0.0.0/33", "1.2.3"]
    assert f.invalid_networks([]) == []
    assert f.invalid_networks(None) == []


def test_filter_module_exports_the_address_filters():
    assert {"sip_is_ip", "sip_is_internal", "invalid_networks", "sip_host_addresses",
            "sip_host_address_entries"} <= set(f.FilterModule().filters())


HOSTVARS = {
    "p1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.10"}, "default_ipv6": {"address": "2001:db8::10"}}},
    "p2": {"sip_internal_address": "10.0.0.11", "ansible_facts": {"default_ipv4": {"address": "192.0.2.11"}}},
    "p3": {"sip_internal_address": ["10.0.0.12", "[2001:db8::12]"]},
    "p4": {"ansible_facts": {}},
    "p5": {"sip_internal_address": "not-an-ip"},
    "p6": {"sip_internal_address": "10.0.0.11"},
}


def test_host_addresses_explicit_address_wins_over_facts_ipv4_and_ipv6():
    out = f.sip_host_address_entries(["p1", "p2", "p3", "p4", "p5"], HOSTVARS)
    assert [(e["host"], e["address"], e["source"]) for e in out["entries"]] == [
        ("p1", "10.0.0.10", "facts"), ("p1", "2001:db8::10", "facts"), ("p2", "10.0.0.11", "sip_internal_address"),
        ("p3", "10.0.0.12", "sip_internal_address"), ("p3", "2001:db8::12", "sip_internal_address")]
    assert out["errors"][0].startswith("p4: no default_ipv4/default_ipv6 facts")
    assert out["errors"][1].startswith("p5: sip_internal_address 'not-an-ip'")


def test_host_addresses_each_address_once_and_ipv4_only_on_request():
    assert f.sip_host_addresses(["p1", "p2", "p6"], HOSTVARS) == ["10.0.0.10", "2001:db8::10", "10.0.0.11"]
    assert f.sip_host_addresses(["p1"], HOSTVARS, ipv6=False) == ["10.0.0.10"]
    assert f.sip_host_addresses([], HOSTVARS) == []


def test_brackets_are_not_an_ip_literal_but_are_read_as_internal():
    assert not f.is_ip("[fd00::2]")
    assert f.is_internal("[fd00::2]")
