"""OpenSIPS from the vendor's packages (or a mirror): the shared proxy checks,
plus what is specific to the package install."""

from pathlib import Path

import pytest

from opensips_checks import *  # noqa: F403 (the shared checks are collected here)
from opensips_checks import Edge

testinfra_hosts = ["ansible://osp-proxy"]


@pytest.fixture(scope="module")
def edge():
    return Edge(
        proxy_name="osp-proxy",
        proxy_ip="10.210.20.10",
        media={"osp-fs1": "sip:10.210.20.41:5060", "osp-fs2": "sip:10.210.20.42:5060"},
        client_name="osp-client",
        scenario_dir=Path(__file__).resolve().parents[1],
        process_id=lambda host: host.check_output("systemctl show -p MainPID --value opensips"),
        version_command="/usr/sbin/opensips -V",
    )


def test_service_is_enabled_and_running(host):
    service = host.service("opensips")
    assert service.is_running
    assert service.is_enabled


def test_config_is_private_to_opensips(host):
    cfg = host.file("/etc/opensips/opensips.cfg")
    assert cfg.mode == 0o640
    assert (cfg.user, cfg.group) == ("root", "opensips")


def test_memory_is_sized_from_inventory(host):
    cmdline = host.check_output("cat /proc/$(systemctl show -p MainPID --value opensips)/cmdline | tr '\\0' ' '")
    assert "-m 256" in cmdline and "-M 32" in cmdline
