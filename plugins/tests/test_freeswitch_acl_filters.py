"""Unit tests of the freeswitch_acl role's filters (no Ansible run needed)."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "freeswitch_acl_filters", Path(__file__).resolve().parents[1] / "filter" / "freeswitch_acl.py")
f = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(f)

BEGIN, END = "BEGIN freeswitch_acl managed lists", "END freeswitch_acl managed lists"

VANILLA = """<configuration name="acl.conf" description="Network Lists">
  <network-lists>
    <!-- auto lists -->
    <list name="lan" default="allow">
      <node type="deny" cidr="192.168.42.0/24"/>
    </list>
    <list name="domains" default="deny">
      <node type="allow" domain="$${domain}"/>
    </list>
    <X-PRE-PROCESS cmd="include" data="acl/*.xml"/>
  </network-lists>
</configuration>
"""


@pytest.mark.parametrize("text", [
    "plain", "a -- b", "ends with -", "--->", "x\ny\tz", 'evil --> <list name="x"> & "q"',
    '<X-PRE-PROCESS cmd="exec" data="id"/>', "<!--#exec id-->", "\x01ctl",
])
def test_comment_text_is_always_a_valid_one_line_comment(text):
    safe = f.freeswitch_acl_comment(text)
    assert "--" not in safe and not safe.endswith("-") and "\n" not in safe
    assert "x-pre-process" not in safe.lower()
    ET.fromstring(f"<r><!-- {safe} --></r>")


def test_extra_entries_normalise_and_report_errors():
    out = f.freeswitch_acl_extra_entries(
        ["10.1.2.3", "2001:DB8::7", "192.0.2.0/24", {"cidr": "2001:db8::/32", "description": "lab"},
         "10.0.0.999/33", "10.0.0.1/24", {"description": "no cidr"}, "bad"])
    assert [e["cidr"] for e in out["entries"]] == ["10.1.2.3/32", "2001:db8::7/128", "192.0.2.0/24", "2001:db8::/32"]
    assert out["entries"][3]["comment"] == "lab"
    assert len(out["errors"]) == 4
    assert "'10.0.0.999/33' is not a valid" in out["errors"][0] and "host bits set" in out["errors"][1]


def test_proxy_entries_are_host_routes_of_the_shared_addresses():
    addresses = {"entries": [{"address": "10.0.0.10", "host": "p1", "source": "facts"},
                             {"address": "2001:db8::12", "host": "p3", "source": "sip_internal_address"}],
                 "errors": ["p4: no default_ipv4/default_ipv6 facts; set sip_internal_address for it"]}
    out = f.freeswitch_acl_proxy_entries(addresses)
    assert out["entries"] == [{"cidr": "10.0.0.10/32", "comment": "p1 (facts)", "host": "p1"},
                              {"cidr": "2001:db8::12/128", "comment": "p3 (sip_internal_address)", "host": "p3"}]
    assert out["errors"] == addresses["errors"]


def test_kept_children_drop_the_managed_block_and_our_list_and_are_a_fixed_point():
    first = f.freeswitch_acl_kept_children(VANILLA, ["lan"], BEGIN, END)
    assert first["error"] == ""
    assert [c.split()[0] for c in first["children"]] == ["<!--", "<list", "<X-PRE-PROCESS"]
    assert '<node type="allow" domain="$${domain}" />' in first["children"][1]
    rendered = (f"<configuration><network-lists><!-- {BEGIN} --><list name=\"lan\"/><!-- {END} -->"
                + "".join(first["children"]) + "</network-lists></configuration>")
    assert f.freeswitch_acl_kept_children(rendered, ["lan"], BEGIN, END)["children"] == first["children"]


def test_kept_children_yield_to_lists_of_the_extra_xml():
    out = f.freeswitch_acl_kept_children(VANILLA, ["ours"], BEGIN, END, extra_xml="<list name='domains' default='deny'/>")
    assert not any('name="domains"' in c for c in out["children"])


@pytest.mark.parametrize("text, error", [
    ("<configuration><network-lists>", "not well-formed"),
    ("<configuration/>", "no <configuration><network-lists>"),
])
def test_kept_children_report_unreadable_files(text, error):
    assert error in f.freeswitch_acl_kept_children(text, [], BEGIN, END)["error"]


@pytest.mark.parametrize("text, xpath", [
    ('<profile name="external"><settings/></profile>', "/profile"),
    ('<include><profile name="x"><settings/></profile></include>', "/include/profile"),
    ("<include/>", ""),
    ("<profile>", ""),
])
def test_profile_root(text, xpath):
    out = f.freeswitch_acl_profile_root(text)
    assert out["xpath"] == xpath and bool(out["error"]) == (xpath == "")


def test_untrusted_lists_proxies_whose_media_source_is_outside_the_list():
    hostvars = {"p1": {"opensips_media_source": "10.20.0.10"}, "p2": {"opensips_media_source": "198.51.100.11"},
                "p3": {}, "p4": {"opensips_media_source": "2001:db8::4"}}
    cidrs = ["10.20.0.10/32", "10.20.0.11/32", "2001:db8::/64"]
    assert f.freeswitch_acl_untrusted(["p1", "p2", "p3", "p4"], hostvars, cidrs) == ["p2 from 198.51.100.11"]
    assert f.freeswitch_acl_untrusted(["p1"], hostvars, []) == ["p1 from 10.20.0.10"]
