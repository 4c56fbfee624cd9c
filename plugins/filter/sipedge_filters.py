"""Filters shared by the roles (one place): SIP URI hosts, trusted sources, db_text escaping."""

from __future__ import annotations

import hashlib
import ipaddress
import re

_URI = re.compile(r"^sips?:(?:[^@;>]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:;>\[\]]+)(?::(?P<port>\d+))?(?:[;>].*)?$")


def sip_uri_host(uri: str) -> str:
    """Host part of a sip:/sips: URI, without IPv6 brackets; '' when it is not such a URI."""
    match = _URI.match(str(uri).strip())
    return match.group("host").strip("[]") if match else ""


def sip_parent_dirs(paths) -> list[str]:
    """Every parent directory of relative paths, parents first: ['a/b/c', 'd'] -> ['a', 'a/b']."""
    dirs: list[str] = []
    for path in paths:
        parts = str(path).split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent and parent not in dirs:
                dirs.append(parent)
    return dirs


# Internal addresses: loopback, RFC 1918 and unique local IPv6 (RFC 4193).
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
))


def _address(value):
    try:
        return ipaddress.ip_address(str(value).strip().strip("[]"))
    except ValueError:
        return None


def is_ip(value) -> bool:
    """Is ``value`` an IPv4 or IPv6 address literal (no brackets; not a name, not a network)?"""
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def is_internal(value) -> bool:
    """Is ``value`` a loopback, RFC 1918 or ULA address? False for a public address or a non-address."""
    ip = _address(value)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in INTERNAL_NETWORKS)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


def sip_host_address_entries(hosts, hostvars, ipv6=True) -> dict:
    """{entries: [{address, host, source}], errors: [..]}: the addresses of ``hosts``.

    The one place that decides a host's address for the others: its explicit
    ``sip_internal_address`` (one address or a list) wins; otherwise its facts
    default_ipv4.address and (``ipv6``) default_ipv6.address. A host of an
    active-backup pair also sends from the pair's floating address while it
    holds it (a two-network pair's core side, ``sip_floating_internal_address``,
    else ``sip_floating_address``): that address comes after its own.
    """
    entries, errors = [], []
    for host in _as_list(hosts):
        hv = hostvars[host]
        explicit = hv.get("sip_internal_address")
        if explicit not in (None, "", []):
            addresses, source = _as_list(explicit), "sip_internal_address"
        else:
            facts = hv.get("ansible_facts") or {}
            addresses = [(facts.get("default_ipv4") or {}).get("address")]
            if ipv6:
                addresses.append((facts.get("default_ipv6") or {}).get("address"))
            addresses, source = [a for a in addresses if a], "facts"
            if not addresses:
                errors.append(f"{host}: no default_ipv4/default_ipv6 facts; set sip_internal_address for it")
                continue
        pairs = [(a, source) for a in addresses]
        key = "sip_floating_internal_address" if hv.get("sip_floating_internal_address") not in (None, "") \
            else "sip_floating_address"
        if hv.get(key) not in (None, ""):
            pairs.append((hv[key], key))
        for address, source in pairs:
            ip = _address(address)
            if ip is None:
                errors.append(f"{host}: {source} {address!r} is not an IPv4/IPv6 address")
                continue
            entries.append({"address": str(ip), "host": host, "source": source})
    return {"entries": entries, "errors": errors}


def sip_host_addresses(hosts, hostvars, ipv6=True) -> list[str]:
    """The addresses of ``hosts`` (sip_internal_address, else facts), each once, in order."""
    out: list[str] = []
    for entry in sip_host_address_entries(hosts, hostvars, ipv6)["entries"]:
        if entry["address"] not in out:
            out.append(entry["address"])
    return out


def sip_host_address(host, hostvars) -> str:
    """The one address others reach ``host`` on (a database, a Galera node).

    Its first sip_host_addresses entry (IPv4 facts only); a host without any
    falls back to its ansible_host, and a name outside the inventory is used as given.
    """
    if host not in hostvars:
        return str(host)
    found = sip_host_addresses([host], hostvars, False)
    return found[0] if found else str(hostvars[host].get("ansible_host") or host)


def opensips_socket_rules(sockets) -> list[dict]:
    """Firewall rules (sip_firewall format) of OpenSIPS sockets: udp as udp, every stream transport as tcp."""
    return [{
        "name": f"opensips {s['proto']} {s['port']}",
        "proto": "udp" if s["proto"] == "udp" else "tcp",
        "port": int(s["port"]),
        "sources": list(s.get("sources") or []),
    } for s in sockets or []]


def ip_in_networks(address, networks) -> bool:
    """Is ``address`` inside any of ``networks`` (CIDR strings)? False for a non-address."""
    try:
        ip = ipaddress.ip_address(str(address).strip("[]"))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(str(n), strict=False) for n in networks or []
               if ipaddress.ip_network(str(n), strict=False).version == ip.version)


def invalid_networks(networks) -> list[str]:
    """The entries of ``networks`` that are not an IP address or CIDR network."""
    bad = []
    for n in networks or []:
        try:
            ipaddress.ip_network(str(n), strict=False)
        except ValueError:
            bad.append(str(n))
    return bad


def sip_uri_transport(uri: str) -> str:
    """Transport a sip:/sips: URI asks for: udp unless ;transport= says otherwise (sips: tls)."""
    match = re.search(r";transport=([A-Za-z]+)", str(uri))
    if match:
        return match.group(1).lower()
    return "tls" if str(uri).strip().lower().startswith("sips:") else "udp"


def sip_uri_port(uri: str) -> int:
    """Port of a sip:/sips: URI, or the transport's default (5060, 5061 for tls)."""
    match = _URI.match(str(uri).strip())
    if match and match.group("port"):
        return int(match.group("port"))
    return 5061 if sip_uri_transport(uri) == "tls" else 5060


# permissions `address` groups: sources trusted on every socket, and the media servers (core side only)
TRUSTED_GROUP = 1
MEDIA_SERVER_GROUP = 2


def opensips_trusted(trusted_sources, dispatcher_sets) -> list[dict]:
    """Trusted sources plus every media server (dispatcher destination) given by IP address.

    Media servers are trusted by address, transport and port: a UDP media
    server sends from the port its URI names (its SIP profile's socket), so
    only that port is trusted; over a stream transport the source port is
    ephemeral and any port of that transport is trusted. An explicitly listed
    source wins over a derived one with the same address.

    Media servers are core peers (``group`` MEDIA_SERVER_GROUP): the proxy trusts them only on its
    core-side socket, so their address forged from the public side earns nothing. Listed sources
    (carriers, trunks) are in TRUSTED_GROUP, trusted on any socket.
    """
    out = [dict(t) for t in (trusted_sources or [])]
    explicit = {t["address"] for t in out}
    seen = set()
    for dset in dispatcher_sets or []:
        for dest in dset.get("destinations", []):
            uri = dest.get("uri", "")
            host, proto = sip_uri_host(uri), sip_uri_transport(uri)
            port = sip_uri_port(uri) if proto == "udp" else 0
            if not (host and is_ip(host)) or host in explicit or (host, port, proto) in seen:
                continue
            seen.add((host, port, proto))
            out.append({"address": host, "port": port, "proto": proto, "group": MEDIA_SERVER_GROUP,
                        "description": f"media server (dispatcher set {dset['id']})"})
    return out


# dispatcher `state` column: 0 active, 1 inactive, 2 probing.
DISPATCHER_STATES = {"active": 0, "inactive": 1, "probing": 2}


def opensips_dispatcher_rows(dispatcher_sets) -> list[dict]:
    """Rows of the dispatcher table (db_text file or MySQL) from the inventory's sets."""
    rows = []
    for dset in dispatcher_sets or []:
        for dest in dset.get("destinations", []):
            rows.append({
                "setid": int(dset["id"]),
                "destination": dest["uri"],
                "socket": dest.get("socket") or None,
                "state": DISPATCHER_STATES[dest.get("state", "active")],
                "probe_mode": 0,
                "weight": str(dest.get("weight", 1)),
                "priority": int(dest.get("priority", 0)),
                "attrs": str(dest.get("attrs", "")),
                "description": str(dest.get("description", ""))[:64],
            })
    return rows


def opensips_address_rows(trusted_sources, dispatcher_sets, group: int = TRUSTED_GROUP) -> list[dict]:
    """Rows of the permissions `address` table: the trusted sources (``group``) plus the media
    servers (MEDIA_SERVER_GROUP)."""
    return [{
        "grp": t.get("group", group),
        "ip": t["address"],
        "mask": int(t.get("mask", 128 if ":" in t["address"] else 32)),
        "port": int(t.get("port", 0)),
        "proto": t.get("proto", "any"),
        "pattern": None,
        "context_info": str(t.get("description", ""))[:32],
    } for t in opensips_trusted(trusted_sources, dispatcher_sets)]


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SIP_USER = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}$")


def sip_subscriber_errors(subscribers, store_plaintext: bool = False) -> list[str]:
    """What is wrong with a subscriber list, one message per problem, naming the entry (never a password)."""
    errors, seen = [], set()
    for index, sub in enumerate(subscribers or []):
        if not isinstance(sub, dict):
            errors.append(f"entry {index}: not a mapping")
            continue
        user, domain = str(sub.get("username", "")), str(sub.get("domain", ""))
        name = f"{user}@{domain}" if user else f"entry {index}"
        state = sub.get("state", "present")
        if not _SIP_USER.match(user):
            errors.append(f"{name}: username missing or not a valid SIP user part")
        if not (_HOSTNAME.match(domain) or is_ip(domain)) or len(domain) > 64:
            errors.append(f"{name}: domain {domain!r} is not a valid host name or IP address")
        if state not in ("present", "absent"):
            errors.append(f"{name}: state must be present or absent")
        if state == "present" and not str(sub.get("password") or ""):
            errors.append(f"{name}: password missing")
        if store_plaintext and len(str(sub.get("password") or "")) > 25:
            errors.append(f"{name}: password longer than the 25 characters of the plaintext column")
        key = (user, domain.lower())
        if key in seen:
            errors.append(f"{name}: listed twice")
        seen.add(key)
    return errors


def dbtext_escape(value) -> str:
    """Escape a value for a db_text column: backslash, colon and line breaks."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n").replace("\r", "\\r")


def opensips_destinations_at(dispatcher_sets, addresses) -> list[dict]:
    """(set id, URI) of every dispatcher destination whose host is one of ``addresses``."""
    wanted = {str(a).strip("[]").lower() for a in addresses or [] if a}
    return [{"set": int(s["id"]), "uri": d["uri"]}
            for s in dispatcher_sets or [] for d in s.get("destinations") or []
            if sip_uri_host(d["uri"]).lower() in wanted]


def _live_dialogs(dlg_list):
    """Dialogs of an MI ``dlg_list`` result that are not deleted (state 5 lingers a moment)."""
    return [d for d in (dlg_list or {}).get("Dialogs") or [] if int(d.get("state", 0)) < 5]


def _callee_hosts(dialog) -> set[str]:
    return {sip_uri_host(c.get("callee_contact", "")).lower()
            for c in dialog.get("CALLEES") or [] if c.get("callee_contact")}


def opensips_unanswered_dialogs(dlg_list) -> list[str]:
    """IDs of live dialogs whose callee is not known yet (no callee contact: not answered)."""
    return [str(d.get("ID")) for d in _live_dialogs(dlg_list) if not _callee_hosts(d)]


def opensips_dialogs_towards(dlg_list, addresses, unanswered_ids=None) -> int:
    """How many live dialogs of an MI ``dlg_list`` result may involve a callee at ``addresses``.

    A dialog counts when a callee contact is at one of them. A dialog without a
    callee contact yet (an INVITE nobody answered so far) may be ringing there:
    it counts too, unless ``unanswered_ids`` is given, in which case only
    those (the ones that were pending when the destination was disabled;
    newer ones cannot be routed to it) count.
    """
    wanted = {str(a).strip("[]").lower() for a in addresses or [] if a}
    pending = None if unanswered_ids is None else {str(i) for i in unanswered_ids}
    count = 0
    for dialog in _live_dialogs(dlg_list):
        hosts = _callee_hosts(dialog)
        if hosts & wanted:
            count += 1
        elif not hosts and (pending is None or str(dialog.get("ID")) in pending):
            count += 1
    return count


def sip_dialog_table(host) -> str:
    """The dialog table of one proxy: ``dialog_`` and its inventory name.

    Proxies that share a database keep their dialogs apart: a restarted proxy
    loads only its own (the dialog module's ``table_name``; opensips_db creates
    one per proxy, like the vendor's ``dialog``). Characters MySQL would need
    quoted become ``_``; a name longer than MySQL's 64 keeps a hash of the full
    one, so two long names never share a table.
    """
    name = "dialog_" + re.sub(r"[^A-Za-z0-9_]", "_", str(host))
    if len(name) > 64:
        name = name[:55] + "_" + hashlib.sha1(str(host).encode()).hexdigest()[:8]
    return name


class FilterModule:
    def filters(self):
        return {
            "sip_uri_host": sip_uri_host,
            "sip_parent_dirs": sip_parent_dirs,
            "sip_is_ip": is_ip,
            "sip_is_internal": is_internal,
            "sip_host_address_entries": sip_host_address_entries,
            "sip_host_addresses": sip_host_addresses,
            "sip_host_address": sip_host_address,
            "sip_uri_port": sip_uri_port,
            "sip_uri_transport": sip_uri_transport,
            "opensips_trusted": opensips_trusted,
            "dbtext_escape": dbtext_escape,
            "opensips_dispatcher_rows": opensips_dispatcher_rows,
            "opensips_address_rows": opensips_address_rows,
            "sip_subscriber_errors": sip_subscriber_errors,
            "ip_in_networks": ip_in_networks,
            "opensips_socket_rules": opensips_socket_rules,
            "invalid_networks": invalid_networks,
            "opensips_destinations_at": opensips_destinations_at,
            "opensips_dialogs_towards": opensips_dialogs_towards,
            "opensips_unanswered_dialogs": opensips_unanswered_dialogs,
            "sip_dialog_table": sip_dialog_table,
        }
