"""Filters of the opensips role: SIP URI hosts, trusted sources, db_text escaping."""

from __future__ import annotations

import ipaddress
import re

_URI = re.compile(r"^sips?:(?:[^@;>]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:;>\[\]]+)(?::(?P<port>\d+))?(?:[;>].*)?$")


def sip_uri_host(uri: str) -> str:
    """Host part of a sip:/sips: URI, without IPv6 brackets; '' when it is not such a URI."""
    match = _URI.match(str(uri).strip())
    return match.group("host").strip("[]") if match else ""


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def opensips_trusted(trusted_sources, dispatcher_sets) -> list[dict]:
    """Trusted sources plus every media server (dispatcher destination) given by IP address.

    Media servers are trusted by address so calls they send are not challenged.
    An explicitly listed source wins over a derived one with the same address.
    """
    out = [dict(t) for t in (trusted_sources or [])]
    seen = {t["address"] for t in out}
    for dset in dispatcher_sets or []:
        for dest in dset.get("destinations", []):
            host = sip_uri_host(dest.get("uri", ""))
            if host and is_ip(host) and host not in seen:
                seen.add(host)
                out.append({"address": host, "description": f"media server (dispatcher set {dset['id']})"})
    return out


def dbtext_escape(value) -> str:
    """Escape a value for a db_text column: backslash, colon and line breaks."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n").replace("\r", "\\r")


class FilterModule:
    def filters(self):
        return {
            "sip_uri_host": sip_uri_host,
            "opensips_trusted": opensips_trusted,
            "dbtext_escape": dbtext_escape,
        }
