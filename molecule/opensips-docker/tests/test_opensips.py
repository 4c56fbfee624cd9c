"""OpenSIPS as the vendor's image: the shared proxy checks, plus what is
specific to the container (host network, read-only config, restart policy)."""

import json
from pathlib import Path

import pytest

from opensips_checks import *  # noqa: F403 (the shared checks are collected here)
from opensips_checks import Edge

testinfra_hosts = ["ansible://osd-proxy"]


def container(host):
    return json.loads(host.check_output("docker inspect opensips"))[0]


@pytest.fixture(scope="module")
def edge():
    return Edge(
        proxy_name="osd-proxy",
        proxy_ip="10.210.30.10",
        media={"osd-fs1": "sip:10.210.30.41:5060", "osd-fs2": "sip:10.210.30.42:5060"},
        client_name="osd-client",
        scenario_dir=Path(__file__).resolve().parents[1],
        process_id=lambda host: str(container(host)["State"]["Pid"]) + "@" + container(host)["State"]["StartedAt"],
        version_command="docker exec opensips /usr/sbin/opensips -V",
    )


def test_container_runs_the_image_on_the_host_network(host):
    info = container(host)
    assert info["State"]["Running"]
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_config_is_mounted_read_only(host):
    mounts = {m["Destination"]: m for m in container(host)["Mounts"]}
    assert mounts["/etc/opensips"]["RW"] is False
    assert "-f /etc/opensips/opensips.cfg" in " ".join(container(host)["Args"])
