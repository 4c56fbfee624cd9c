"""The scenario's addresses, read from its inventory (molecule/full-stack/inventory/hosts.yml):
the public side (phones, attacker, the proxy's and the relay's public addresses) and the core
side (media servers, database, the proxy's and the relay's internal addresses)."""

from __future__ import annotations

from pathlib import Path

import yaml

_HOSTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "inventory" / "hosts.yml").read_text())["all"]["hosts"]


def public(host: str) -> str:
    return _HOSTS[host]["sip_public_address"]


def core(host: str) -> str:
    return _HOSTS[host]["sip_internal_address"]


PROXY, PROXY_CORE = public("stack-proxy"), core("stack-proxy")
RELAY, RELAY_CORE = public("stack-relay"), core("stack-relay")
CLIENT, CLIENT2 = public("stack-client"), public("stack-client2")
FS1, FS2 = core("stack-fs1"), core("stack-fs2")
DB = core("stack-db")
MEDIA = {"stack-fs1": f"sip:{FS1}:5060", "stack-fs2": f"sip:{FS2}:5060"}
