"""The rtpengine role's address filters, run on real values (no Ansible needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "filter_plugins" / "rtpengine_filters.py"
_SPEC = importlib.util.spec_from_file_location("rtpengine_filters", _PATH)
filters = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(filters)


@pytest.mark.parametrize("address", [
    "10.0.0.1", "10.210.50.30", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "127.0.0.1", "::1", "fd00::1", "fc12:3456::7", "::ffff:192.168.0.5", "[fd00::2]",
])
def test_internal_addresses(address):
    assert filters.rtpengine_is_internal(address) is True


@pytest.mark.parametrize("address", [
    "8.8.8.8", "172.32.0.1", "172.15.255.255", "203.0.113.30", "100.64.0.1", "169.254.1.1",
    "2001:4860:4860::8888", "fe80::1", "::ffff:8.8.8.8", "0.0.0.0", "::",
])
def test_public_or_unspecified_addresses_are_not_internal(address):
    assert filters.rtpengine_is_internal(address) is False


@pytest.mark.parametrize("value", ["localhost", "relay.example.net", "10.0.0.0/8", "", None, "10.0.0.256"])
def test_non_addresses_are_neither_ip_nor_internal(value):
    assert filters.rtpengine_is_ip(value) is False
    assert filters.rtpengine_is_internal(value) is False


def test_ip_literals():
    assert filters.rtpengine_is_ip("10.210.50.30")
    assert filters.rtpengine_is_ip("2001:db8::1")


def test_invalid_networks_lists_only_the_bad_entries():
    values = ["10.210.50.10", "10.0.0.0/8", "fd00::/8", "proxy1", "10.0.0.0/33", "1.2.3"]
    assert filters.rtpengine_invalid_networks(values) == ["proxy1", "10.0.0.0/33", "1.2.3"]
    assert filters.rtpengine_invalid_networks([]) == []
    assert filters.rtpengine_invalid_networks(None) == []


def test_filter_module_exports_the_three_filters():
    assert set(filters.FilterModule().filters()) == {"rtpengine_is_ip", "rtpengine_is_internal", "rtpengine_invalid_networks"}
