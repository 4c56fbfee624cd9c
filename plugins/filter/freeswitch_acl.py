"""Filters of the freeswitch_acl role (plugins/filter, beside the shared ones): addresses to ACL entries, safe XML comments,
and reading an existing acl.conf.xml / sofia profile (Python's ipaddress and
xml.etree only, nothing to install on the controller)."""

from __future__ import annotations

import copy
import ipaddress
import re
import xml.etree.ElementTree as ET

_LIST_NAME = re.compile(r"<list\b[^>]*?\bname\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# FreeSWITCH's preprocessor reads its files line by line before any XML
# parsing and acts on <X-PRE-PROCESS ...> and <!--#cmd ...--> wherever they
# are, comments included.
_PREPROCESS = re.compile(r"(?i)(x-pre)-(process)")


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


def freeswitch_acl_comment(text) -> str:
    """Text that is safe inside a one-line <!-- ... --> of a FreeSWITCH file.

    XML: no '--' and no trailing '-'. FreeSWITCH: one line (its preprocessor
    drops whole lines holding '<?' or '<include>'), and no 'X-PRE-PROCESS',
    which it would execute even inside a comment ('<!--#' cannot remain
    once '--' is gone).
    """
    text = _CONTROL.sub(" ", str(text if text is not None else ""))
    text = " ".join(text.split())
    text = _PREPROCESS.sub(r"\1 \2", text)
    while "--" in text:
        text = text.replace("--", "- -")
    if text.endswith("-"):
        text += " "
    return text


def _network(value):
    """(network, error) for an IP address or CIDR; a bare address becomes /32 or /128."""
    raw = str(value).strip()
    try:
        return ipaddress.ip_network(raw, strict=True), ""
    except ValueError as exc:
        return None, f"{raw!r} is not a valid IPv4/IPv6 address or network ({exc})"


def freeswitch_acl_extra_entries(extra_cidrs) -> dict:
    """{entries: [{cidr, comment}], errors: [..]} for freeswitch_acl_extra_cidrs
    (strings, or dicts {cidr, description})."""
    entries, errors = [], []
    for item in _as_list(extra_cidrs):
        if isinstance(item, dict):
            cidr, comment = item.get("cidr"), item.get("description", "freeswitch_acl_extra_cidrs")
            if cidr is None:
                errors.append(f"{item!r} has no 'cidr'")
                continue
        else:
            cidr, comment = item, "freeswitch_acl_extra_cidrs"
        net, error = _network(cidr)
        if error:
            errors.append(error)
        else:
            entries.append({"cidr": str(net), "comment": str(comment)})
    return {"entries": entries, "errors": errors}


def freeswitch_acl_proxy_entries(addresses) -> dict:
    """{entries: [{cidr, comment, host}], errors: [..]} for the proxies, from
    sip_host_address_entries (sipedge_filters: the one place a host's address
    is decided). IPv4 entries are /32, IPv6 /128."""
    entries = []
    for entry in addresses["entries"]:
        ip = ipaddress.ip_address(entry["address"])
        entries.append({"cidr": f"{ip}/{ip.max_prefixlen}", "comment": f"{entry['host']} ({entry['source']})",
                        "host": entry["host"]})
    return {"entries": entries, "errors": list(addresses["errors"])}


def freeswitch_acl_untrusted(hosts, hostvars, cidrs) -> list[str]:
    """"<host> from <address>" for each proxy whose exported opensips_media_source (the
    address it sends to the media servers from) is in none of ``cidrs``; proxies that
    exported nothing (the opensips role did not run before) are not judged."""
    networks = [ipaddress.ip_network(str(c), strict=False) for c in cidrs]
    out = []
    for host in _as_list(hosts):
        source = hostvars[host].get("opensips_media_source")
        if not source:
            continue
        try:
            ip = ipaddress.ip_address(str(source).strip("[]"))
        except ValueError:
            out.append(f"{host} from {source!r} (not an address)")
            continue
        if not any(ip.version == n.version and ip in n for n in networks):
            out.append(f"{host} from {ip}")
    return out


def _parse(text):
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    return ET.fromstring(text, parser=parser)


def freeswitch_acl_kept_children(text, managed_names, marker_begin, marker_end, extra_xml="") -> dict:
    """What the role keeps of an existing acl.conf.xml: {error, children}.

    children are the serialized children of <network-lists> (lists, comments,
    X-PRE-PROCESS lines, ...) in their order, re-indented for 4 spaces, without
    the block between the role's markers and without any <list> whose name the
    role writes itself (the managed list and the lists of extra_xml).
    """
    names = {str(n) for n in _as_list(managed_names)}
    names |= {a or b for a, b in _LIST_NAME.findall(str(extra_xml or ""))}
    try:
        root = _parse(text)
    except ET.ParseError as exc:
        return {"error": f"not well-formed XML ({exc})", "children": []}
    lists = root.find("network-lists")
    if root.tag != "configuration" or lists is None:
        return {"error": "no <configuration><network-lists> in it", "children": []}
    children, inside = [], False
    for child in lists:
        if child.tag is ET.Comment:
            mark = (child.text or "").strip()
            if mark == marker_begin:
                inside = True
                continue
            if mark == marker_end:
                inside = False
                continue
        if inside or (child.tag == "list" and child.get("name") in names):
            continue
        node = copy.deepcopy(child)
        node.tail = None
        if len(node):
            ET.indent(node, space="  ", level=2)
        children.append(ET.tostring(node, encoding="unicode"))
    return {"error": "", "children": children}


def freeswitch_acl_profile_root(text) -> dict:
    """XPath of the <profile> element of a sofia profile file: {error, xpath}."""
    try:
        root = _parse(text)
    except ET.ParseError as exc:
        return {"error": f"not well-formed XML ({exc})", "xpath": ""}
    if root.tag == "profile":
        return {"error": "", "xpath": "/profile"}
    if root.tag == "include" and len(root.findall("profile")) == 1:
        return {"error": "", "xpath": "/include/profile"}
    return {"error": "no single <profile> element at its top", "xpath": ""}


class FilterModule:
    def filters(self):
        return {
            "freeswitch_acl_comment": freeswitch_acl_comment,
            "freeswitch_acl_extra_entries": freeswitch_acl_extra_entries,
            "freeswitch_acl_proxy_entries": freeswitch_acl_proxy_entries,
            "freeswitch_acl_untrusted": freeswitch_acl_untrusted,
            "freeswitch_acl_kept_children": freeswitch_acl_kept_children,
            "freeswitch_acl_profile_root": freeswitch_acl_profile_root,
        }
