"""Address checks of the rtpengine role (Python's ipaddress; ansible.utils is not installed)."""

from __future__ import annotations

import ipaddress

# What counts as internal for the ng control socket: loopback, RFC 1918 and
# unique local IPv6 (RFC 4193). Everything else is treated as public.
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
))


def _address(value):
    try:
        return ipaddress.ip_address(str(value).strip().strip("[]"))
    except ValueError:
        return None


def rtpengine_is_ip(value) -> bool:
    """Is ``value`` an IPv4 or IPv6 address literal (not a name, not a network)?"""
    return _address(value) is not None


def rtpengine_is_internal(value) -> bool:
    """Is ``value`` a loopback, RFC 1918 or ULA address? False for a public address or a non-address."""
    ip = _address(value)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in INTERNAL_NETWORKS)


def rtpengine_invalid_networks(values) -> list[str]:
    """The entries of ``values`` that are neither an IP address nor a CIDR network."""
    bad = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            bad.append(str(value))
    return bad


class FilterModule:
    def filters(self):
        return {
            "rtpengine_is_ip": rtpengine_is_ip,
            "rtpengine_is_internal": rtpengine_is_internal,
            "rtpengine_invalid_networks": rtpengine_invalid_networks,
        }
