"""Tests (Jinja ``is``) shared by the roles and playbooks: one place for "is this address here"."""

from __future__ import annotations

import ipaddress
import re

DOCUMENTATION = r"""
name: sip_address_holder
short_description: Whether C(ip -o addr show) output lists an address
description:
  - True when one of the C(inet)/C(inet6) lines of C(ip -o addr show) carries the address, so the
    host that printed it holds that (floating) address. IPv6 addresses compare as addresses, not text.
  - The keepalived notify hook of the opensips role makes the same check in shell on the node itself.
options:
  _input:
    description: Standard output of C(ip -o addr show) on the host.
    type: str
    required: true
  address:
    description: The address (IPv4 or IPv6, brackets allowed); a value that is not an address is never held.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Wait until the floating address has left this node
  ansible.builtin.command: ip -o addr show
  register: here
  changed_when: false
  until: here.stdout is not sipedge.edge.sip_address_holder(sip_vip_address)
"""

RETURN = r"""
_value:
  description: Whether the address is on one of the host's interfaces.
  type: bool
"""

_INET = re.compile(r"\binet6?\s+([0-9A-Fa-f:.]+)/\d+")


def sip_address_holder(ip_addr_output, address) -> bool:
    try:
        wanted = ipaddress.ip_address(str(address).strip().strip("[]"))
    except ValueError:
        return False
    for found in _INET.findall(str(ip_addr_output or "")):
        try:
            if ipaddress.ip_address(found) == wanted:
                return True
        except ValueError:
            continue
    return False


class TestModule:
    def tests(self):
        return {"sip_address_holder": sip_address_holder}
