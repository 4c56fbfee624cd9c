"""The freeswitch_acl role on a media server: the ACL of the proxies in acl.conf.xml,
the sofia profile pointing at it, inventory changes, bad input and reloads.

FreeSWITCH is not installable here: prepare.yml wrote its vanilla-style
configuration tree, an `fs_cli` stand-in that records the commands it gets and
a `freeswitch` unit stand-in. The tests re-run the scenario's converge the way
an operator changing the inventory would, and read the recap.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from opensips_checks import other, recap_changed, run_playbook

testinfra_hosts = ["ansible://fsacl-fs1"]

SCENARIO = Path(__file__).resolve().parents[1]
ACL = "/etc/freeswitch/autoload_configs/acl.conf.xml"
EXTERNAL = "/etc/freeswitch/sip_profiles/external.xml"
INTERNAL = "/etc/freeswitch/sip_profiles/internal.xml"
ORIG = "/var/lib/fsacl-test/orig"
FS_CLI_LOG = "/var/lib/fsacl-test/fs_cli.log"
LIST = "opensips_proxies"
PROXIES = {"fsacl-proxy1": "10.210.60.10", "fsacl-proxy2": "10.210.60.11"}


# --- helpers ---------------------------------------------------------------------------

def converge(*extra_vars, inventories=()) -> subprocess.CompletedProcess:
    """The scenario's converge, with extra vars (JSON) and extra inventory sources."""
    return run_playbook(SCENARIO / "converge.yml", None, *extra_vars, inventories=inventories)


def fs1_changed(run: subprocess.CompletedProcess) -> int:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return recap_changed(run.stdout, "fsacl-fs1")


def parse(text: str) -> ET.Element:
    """The document, comments included (ElementTree drops them by default)."""
    return ET.fromstring(text, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))


def acl_root(host) -> ET.Element:
    return parse(host.file(ACL).content_string)


def lists(root) -> dict[str, ET.Element]:
    return {lst.get("name"): lst for lst in root.find("network-lists").findall("list")}


def our_cidrs(root) -> list[str]:
    lst = lists(root)[LIST]
    assert lst.get("default") == "deny"
    nodes = lst.findall("node")
    assert {n.get("type") for n in nodes} <= {"allow"}
    return [n.get("cidr") for n in nodes]


def fs_cli_log(host) -> list[str]:
    log = host.file(FS_CLI_LOG)
    return log.content_string.splitlines() if log.exists else []


def snapshot(host) -> tuple:
    """What must not move when a run fails: content and modification time."""
    f = host.file(ACL)
    return f.content_string, f.mtime, host.file(EXTERNAL).content_string


def proxy_addresses() -> set[str]:
    """The proxies' IPv4 (/32) and, when the containers have one, default IPv6 (/128)."""
    out = set()
    for name, ipv4 in PROXIES.items():
        facts = other(name).ansible("setup", "gather_subset=!all,!min,network", check=False)["ansible_facts"]
        assert facts["ansible_default_ipv4"]["address"] == ipv4
        out.add(f"{ipv4}/32")
        ipv6 = facts.get("ansible_default_ipv6", {}).get("address")
        if ipv6:
            out.add(f"{ipv6}/128")
    return out


@pytest.fixture(scope="module")
def expected() -> set[str]:
    return proxy_addresses()


# --- the converged state ---------------------------------------------------------------

def test_acl_conf_is_xml_and_lists_exactly_the_proxies(host, expected):
    root = acl_root(host)
    assert root.tag == "configuration" and root.get("name") == "acl.conf"
    cidrs = our_cidrs(root)
    assert sorted(cidrs) == sorted(expected)
    assert {"10.210.60.10/32", "10.210.60.11/32"} <= set(cidrs)
    assert len(cidrs) == len(set(cidrs))


def test_acl_conf_keeps_the_lists_it_found(host):
    root, orig = acl_root(host), parse(host.file(f"{ORIG}/acl.conf.xml").content_string)
    found, before = lists(root), lists(orig)
    assert set(found) == set(before) | {LIST}
    for name, lst in before.items():
        assert found[name].attrib == lst.attrib, name
        assert [n.attrib for n in found[name].findall("node")] == [n.attrib for n in lst.findall("node")], name
    assert found["domains"].find("node").attrib == {"type": "allow", "domain": "$${domain}"}
    comments = [c.text.strip() for c in root.iter(ET.Comment)]
    assert any(c.startswith("These ACL's are automatically created on startup.") for c in comments)
    assert "Added by the site: the carrier's signalling addresses (not the role's)." in comments


def test_acl_conf_says_it_is_managed(host):
    f = host.file(ACL)
    assert f.content_string.startswith("<!-- Ansible managed")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)


def test_external_profile_applies_the_list_and_is_otherwise_intact(host):
    now = parse(host.file(EXTERNAL).content_string)
    orig = parse(host.file(f"{ORIG}/external.xml").content_string)
    assert now.tag == "profile" and now.get("name") == "external"
    params = [(p.get("name"), p.get("value")) for p in now.find("settings").findall("param")]
    assert [v for n, v in params if n == "apply-inbound-acl"] == [LIST]
    before = [(p.get("name"), p.get("value")) for p in orig.find("settings").findall("param")]
    assert [p for p in params if p[0] != "apply-inbound-acl"] == before
    # everything outside <settings> too, comments and the gateways' X-PRE-PROCESS included
    for tag in ("gateways", "aliases", "domains"):
        assert ET.tostring(now.find(tag)).strip() == ET.tostring(orig.find(tag)).strip(), tag
    assert [c.text for c in now.iter(ET.Comment)] == [c.text for c in orig.iter(ET.Comment)]


def test_unlisted_profile_is_untouched(host):
    assert host.file(INTERNAL).content_string == host.file(f"{ORIG}/internal.xml").content_string


def test_first_converge_reloaded_the_running_freeswitch_once(host):
    log = fs_cli_log(host)
    assert log.count("reloadacl") == 1, log
    assert log.count("sofia profile external rescan") == 1, log
    assert "sofia profile internal rescan" not in log


# --- inventory changes --------------------------------------------------------------------

def test_proxy_added_to_the_inventory_appears_then_goes(host, expected, tmp_path):
    """A third proxy (explicit sip_internal_address, IPv4 and IPv6) is added, then removed."""
    inventory = tmp_path / "proxy3.yml"
    inventory.write_text(json.dumps({"all": {"children": {"sip_proxies": {"hosts": {
        "fsacl-proxy3": {"sip_internal_address": ["10.210.60.12", "fd00:210:60::12"]}}}}}}))
    log_before = fs_cli_log(host)
    try:
        assert fs1_changed(converge(inventories=[inventory])) >= 1
        root = acl_root(host)
        assert sorted(our_cidrs(root)) == sorted(expected | {"10.210.60.12/32", "fd00:210:60::12/128"})
        assert any("fsacl-proxy3 (sip_internal_address)" in (c.text or "") for c in lists(root)[LIST].iter(ET.Comment))
        # the list changed, the profile did not: reloadacl only
        assert fs_cli_log(host)[len(log_before):] == ["reloadacl"]
        assert fs1_changed(converge(inventories=[inventory])) == 0
    finally:
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert sorted(our_cidrs(acl_root(host))) == sorted(expected)
    assert fs1_changed(converge()) == 0


def test_extra_cidr_appears_then_goes(host, expected):
    extra = {"freeswitch_acl_extra_cidrs": ["10.210.60.12/32", "2001:db8:60::/64"]}
    try:
        assert fs1_changed(converge(extra)) >= 1
        cidrs = our_cidrs(acl_root(host))
        assert sorted(cidrs) == sorted(expected | {"10.210.60.12/32", "2001:db8:60::/64"})
        assert cidrs[-2:] == ["10.210.60.12/32", "2001:db8:60::/64"]  # after the proxies, in their order
        assert fs1_changed(converge(extra)) == 0
    finally:
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert sorted(our_cidrs(acl_root(host))) == sorted(expected)


# --- escaping and validation --------------------------------------------------------------

# Closes the comment and opens an allow-all list; carries a preprocessor command
# FreeSWITCH would run even inside a comment; spans lines.
EVIL = ('evil --> </list><list name="pwn" default="allow"><node type="allow" cidr="0.0.0.0/0"/> & "q"\n'
        '<X-PRE-PROCESS cmd="exec" data="touch /tmp/pwned"/> <!--#exec touch /tmp/pwned--> -')


def test_a_description_cannot_break_or_inject_xml(host, expected):
    """A description that would close the comment and open an allow-all list, were it not made safe."""
    extra = {"freeswitch_acl_extra_cidrs": [{"cidr": "10.210.60.13", "description": EVIL}]}
    try:
        assert fs1_changed(converge(extra)) >= 1
        root = acl_root(host)  # parses: well-formed
        assert "pwn" not in lists(root)
        assert sorted(our_cidrs(root)) == sorted(expected | {"10.210.60.13/32"})
        texts = [c.text or "" for c in lists(root)[LIST].iter(ET.Comment)]
        evil = [t for t in texts if "evil" in t]
        assert len(evil) == 1 and "--" not in evil[0] and "\n" not in evil[0]
        assert '</list><list name="pwn" default="allow">' in evil[0] and '& "q"' in evil[0]
        # nothing FreeSWITCH's line-based preprocessor would act on
        text = host.file(ACL).content_string
        assert "x-pre-process" not in text.lower() and "<!--#" not in text
    finally:
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert sorted(our_cidrs(acl_root(host))) == sorted(expected)


@pytest.mark.parametrize("extra_vars, message", [
    ({"freeswitch_acl_extra_cidrs": ["10.0.0.999/33"]}, "freeswitch_acl_extra_cidrs: '10.0.0.999/33' is not a valid"),
    ({"freeswitch_acl_extra_cidrs": ["10.210.60.1/24"]}, "has host bits set"),
    ({"freeswitch_acl_list_name": 'x"/><list name="all" default="allow'}, "freeswitch_acl_list_name must be a plain identifier"),
    ({"freeswitch_acl_proxy_group": "nosuchgroup"}, "freeswitch_acl_proxy_group (nosuchgroup) has no hosts"),
    ({"freeswitch_acl_sofia_profiles": ["external", "nosuch"]}, "freeswitch_acl_sofia_profiles lists nosuch"),
    ({"freeswitch_acl_conf_dir": "/opt/no-freeswitch"}, "install FreeSWITCH first (this role does not) or set freeswitch_acl_conf_dir"),
], ids=["invalid-cidr", "host-bits", "list-name", "empty-group", "missing-profile", "no-freeswitch"])
def test_bad_input_fails_before_any_change(host, extra_vars, message):
    before, log_before = snapshot(host), fs_cli_log(host)
    run = converge(extra_vars)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    # it stopped in the validation, before the first task that changes anything
    assert "Install xmllint and lxml" not in output
    assert snapshot(host) == before
    assert fs_cli_log(host) == log_before


def test_missing_profile_can_be_skipped_when_asked(host):
    run = converge({"freeswitch_acl_sofia_profiles": ["external", "nosuch"], "freeswitch_acl_profile_missing_ok": True})
    assert fs1_changed(run) == 0
    assert not host.file("/etc/freeswitch/sip_profiles/nosuch.xml").exists


def test_xml_that_xmllint_refuses_never_replaces_the_file(host):
    """A broken snippet renders a file that is not well-formed: xmllint stops it, the live file stays."""
    before, log_before = snapshot(host), fs_cli_log(host)
    run = converge({"freeswitch_acl_extra_xml": '<list name="broken" default="deny"><node type="allow" cidr="192.0.2.1/32">'})
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "failed to validate" in output and "xmllint" in output, output[-3000:]
    assert snapshot(host) == before
    assert fs_cli_log(host) == log_before
    assert "broken" not in host.file(ACL).content_string


def test_extra_xml_lists_are_written_inside_the_managed_block(host):
    snippet = '<list name="monitoring" default="deny">\n  <node type="allow" cidr="192.0.2.50/32"/>\n</list>'
    try:
        assert fs1_changed(converge({"freeswitch_acl_extra_xml": snippet})) >= 1
        found = lists(acl_root(host))
        assert [n.get("cidr") for n in found["monitoring"].findall("node")] == ["192.0.2.50/32"]
        assert fs1_changed(converge({"freeswitch_acl_extra_xml": snippet})) == 0
    finally:
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert "monitoring" not in lists(acl_root(host))


# --- reload handling -----------------------------------------------------------------------

def test_stopped_freeswitch_is_not_reloaded(host, expected):
    host.check_output("systemctl stop freeswitch")
    log_before = fs_cli_log(host)
    try:
        run = converge({"freeswitch_acl_extra_cidrs": ["10.210.60.14/32"]})
        assert fs1_changed(run) >= 1
        assert "FreeSWITCH is not running or fs_cli is missing" in run.stdout, run.stdout[-3000:]
        assert fs_cli_log(host) == log_before
    finally:
        host.check_output("systemctl start freeswitch")
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert fs_cli_log(host)[len(log_before):] == ["reloadacl"]
    assert sorted(our_cidrs(acl_root(host))) == sorted(expected)


def test_a_reload_freeswitch_refuses_fails_the_play(host, expected):
    host.check_output("touch /var/lib/fsacl-test/refuse")
    try:
        run = converge({"freeswitch_acl_extra_cidrs": ["10.210.60.15/32"]})
        output = run.stdout + run.stderr
        assert run.returncode != 0
        assert "RUNNING HANDLER [freeswitch_acl : Reload the FreeSWITCH ACLs]" in run.stdout, output[-3000:]
        assert re.search(r"fsacl-fs1\s*:.*failed=1", run.stdout), output[-3000:]
        assert "fatal: [fsacl-fs1]" in output and "-Error [parse error]" in output, output[-3000:]
    finally:
        host.check_output("rm -f /var/lib/fsacl-test/refuse")
        restored = converge()
    assert fs1_changed(restored) >= 1
    assert fs_cli_log(host)[-1] == "reloadacl"
    assert sorted(our_cidrs(acl_root(host))) == sorted(expected)


def test_exported_firewall_rules_open_sip_to_the_acl_addresses_only(host):
    rules = json.loads(host.file("/root/freeswitch-acl-firewall.json").content_string)
    sip = [r for r in rules if r["name"] == "freeswitch sip (proxies)"]
    assert {(r["proto"], r["port"]) for r in sip} == {("udp", 5060), ("tcp", 5060)}
    assert all(r["sources"] == ["10.210.60.10/32", "10.210.60.11/32"] for r in sip), sip
    assert {"name": "freeswitch rtp", "proto": "udp", "port": "16384-32768", "sources": []} in rules
