"""The opensips_db role against real MariaDB, with a real OpenSIPS using what it provisioned."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import sipkit
from opensips_checks import destinations, other, recap_changed, run_playbook

testinfra_hosts = ["ansible://osdb-db"]

SCENARIO = Path(__file__).resolve().parents[1]
DB_IP, PROXY_IP = "10.210.40.20", "10.210.40.10"
DOMAIN = "db.sipedge.test"
SUBSCRIBERS = {"1001": "osdb-1001-secret", "1002": "osdb-1002-secret"}
PROXY_PASSWORD = "test-proxy-pw"
# What OpenSIPS 3.4-3.6 check at start (modules' *_TABLE_VERSION in the source).
TABLE_VERSIONS = {"subscriber": 8, "location": 1013, "dialog": 12, "acc": 7, "dispatcher": 9, "address": 5}
UPGRADE_RECORD = "/var/lib/sipedge-test/upgrade"


def sql(host, query, db="opensips"):
    """Rows of a query run as root over the server's socket."""
    out = host.check_output(f"mysql -N -B {db} -e {json.dumps(query)}")
    return [line.split("\t") for line in out.splitlines() if line]


def converge_db(*extra_vars: str) -> subprocess.CompletedProcess:
    """The scenario's converge on the database host, as an operator changing inventory would."""
    return run_playbook(SCENARIO / "converge.yml", "osdb-db", *extra_vars)


def db_changed(stdout: str) -> int:
    return recap_changed(stdout, "osdb-db")


# --- schema ---------------------------------------------------------------------------

def test_server_listens_on_the_internal_address_only(host):
    assert host.socket(f"tcp://{DB_IP}:3306").is_listening
    assert not host.socket("tcp://0.0.0.0:3306").is_listening


def test_tables_of_the_used_modules_exist(host):
    tables = {row[0] for row in sql(host, "SHOW TABLES")}
    assert set(TABLE_VERSIONS) | {"version", "missed_calls"} <= tables
    # only the modules the proxies use: nothing from, say, presence or drouting
    assert not tables & {"presentity", "dr_rules", "load_balancer"}


def test_version_rows_are_what_opensips_checks(host):
    versions = {t: int(v) for t, v in sql(host, "SELECT table_name, table_version FROM version")}
    assert {t: versions.get(t) for t in TABLE_VERSIONS} == TABLE_VERSIONS


def test_version_rows_match_the_vendor_sql(host):
    """The rows equal what the installed release's own SQL files insert."""
    files = " ".join(f"/usr/share/opensips/mysql/{m}-create.sql"
                     for m in ("standard", "auth_db", "usrloc", "dialog", "acc", "dispatcher", "permissions"))
    vendor = host.check_output(f"grep -h 'INSERT INTO version' {files}")
    expected = {t: int(v) for t, v in re.findall(r"values \('(\w+)','(\d+)'\)", vendor)}
    versions = {t: int(v) for t, v in sql(host, "SELECT table_name, table_version FROM version")}
    # plus the proxy's own dialog table (opensips_dialog_table), at dialog's version
    assert expected and versions == {**expected, "dialog_osdb_proxy": expected["dialog"]}


def test_schema_records_its_release(host):
    assert sql(host, "SELECT release_name FROM sipedge_schema") == [[os.environ.get("OPENSIPS_VERSION", "3.6")]]


def test_admin_credential_file_is_private(host):
    cnf = host.file("/etc/mysql/opensips-db-admin.cnf")
    assert (cnf.mode, cnf.user, cnf.group) == (0o600, "root", "root")


# --- users and grants -------------------------------------------------------------------

def test_proxy_user_is_granted_only_from_the_proxy_address(host):
    hosts = {row[0] for row in sql(host, "SELECT Host FROM mysql.user WHERE User = 'opensips'", db="mysql")}
    assert hosts == {PROXY_IP}
    grants = " ".join(r[0] for r in sql(host, f"SHOW GRANTS FOR 'opensips'@'{PROXY_IP}'", db="mysql"))
    # table by table: nothing on the whole database
    assert "ON `opensips`.*" not in grants and "ALL PRIVILEGES" not in grants
    assert "GRANT SELECT ON `opensips`.`subscriber`" in grants
    assert "GRANT SELECT ON `opensips`.`address`" in grants
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON `opensips`.`location`" in grants
    assert "GRANT INSERT ON `opensips`.`acc`" in grants


@pytest.mark.parametrize("statement", [
    "DELETE FROM address",                                  # the trust list
    "INSERT INTO address (grp, ip, mask, port, proto) VALUES (1, '192.0.2.66', 32, 0, 'any')",
    "UPDATE address SET ip = '192.0.2.66'",
    "UPDATE subscriber SET ha1 = 'x'",                       # credentials
    "UPDATE dispatcher SET destination = 'sip:192.0.2.66'",  # only the probing state may change
    "DELETE FROM acc",                                       # CDRs are written, never removed
])
def test_proxy_user_cannot_change_what_it_only_reads(statement):
    proxy = other("osdb-proxy")
    out = proxy.run(f"mysql -h {DB_IP} -u opensips -p{PROXY_PASSWORD} -N -B opensips -e \"{statement}\"")
    assert out.rc != 0 and "command denied" in out.stderr, (statement, out.stderr)


def test_proxy_user_connects_from_the_proxy():
    proxy = other("osdb-proxy")
    out = proxy.run(f"mysql -h {DB_IP} -u opensips -p{PROXY_PASSWORD} -N -B opensips -e 'SELECT COUNT(*) FROM subscriber'")
    assert out.rc == 0, out.stderr
    assert int(out.stdout.strip()) == len(SUBSCRIBERS)


def test_proxy_user_is_refused_from_another_container():
    client = other("osdb-client")
    out = client.run(f"mysql -h {DB_IP} -u opensips -p{PROXY_PASSWORD} -N -B opensips -e 'SELECT 1'")
    assert out.rc != 0
    assert "is not allowed to connect" in out.stderr or "Access denied" in out.stderr, out.stderr


def test_monitoring_user_is_read_only(host):
    grants = " ".join(r[0] for r in sql(host, "SHOW GRANTS FOR 'opensips_ro'@'localhost'", db="mysql"))
    assert "GRANT SELECT ON `opensips`.`location`" in grants
    out = host.run("mysql -u opensips_ro -ptest-monitor-pw opensips -e \"DELETE FROM subscriber WHERE username='none'\"")
    assert out.rc != 0 and "command denied" in out.stderr, out.stderr


def test_monitoring_user_cannot_read_password_hashes(host):
    ro = "mysql -u opensips_ro -ptest-monitor-pw -N -B opensips -e"
    assert host.run(f"{ro} 'SELECT COUNT(username) FROM subscriber'").rc == 0
    for column in ("ha1", "ha1_sha256", "password", "*"):
        out = host.run(f"{ro} 'SELECT {column} FROM subscriber'")
        assert out.rc != 0 and "denied" in out.stderr, (column, out.stdout, out.stderr)


# --- subscribers ------------------------------------------------------------------------

@pytest.mark.parametrize("user", sorted(SUBSCRIBERS))
def test_subscriber_hashes_are_the_digest_ha1(host, user):
    a1 = f"{user}:{DOMAIN}:{SUBSCRIBERS[user]}".encode()
    rows = sql(host, f"SELECT password, ha1, ha1_sha256, ha1_sha512t256 FROM subscriber WHERE username = '{user}' AND domain = '{DOMAIN}'")
    assert len(rows) == 1
    plaintext, ha1, sha256, sha512t256 = rows[0]
    assert plaintext == ""  # never stored unless asked for
    assert ha1 == hashlib.md5(a1).hexdigest()
    assert sha256 == hashlib.sha256(a1).hexdigest()
    assert sha512t256 == hashlib.new("sha512_256", a1).hexdigest()


def test_absent_subscriber_is_not_there(host):
    assert sql(host, "SELECT COUNT(*) FROM subscriber WHERE username = '1099'") == [["0"]]


def test_changed_password_updates_the_hash_then_converges(host):
    changed = json.dumps({"sip_subscribers": [
        {"username": "1001", "domain": DOMAIN, "password": SUBSCRIBERS["1001"]},
        {"username": "1002", "domain": DOMAIN, "password": "a-new-password"}]})
    try:
        first = converge_db(changed)
        assert db_changed(first.stdout) >= 1
        ha1 = sql(host, "SELECT ha1 FROM subscriber WHERE username = '1002'")[0][0]
        assert ha1 == hashlib.md5(f"1002:{DOMAIN}:a-new-password".encode()).hexdigest()
        assert db_changed(converge_db(changed).stdout) == 0
    finally:
        restored = converge_db()
        assert db_changed(restored.stdout) >= 1
    ha1 = sql(host, "SELECT ha1 FROM subscriber WHERE username = '1002'")[0][0]
    assert ha1 == hashlib.md5(f"1002:{DOMAIN}:{SUBSCRIBERS['1002']}".encode()).hexdigest()


@pytest.mark.parametrize("subscribers, message", [
    ([{"username": "1001", "domain": DOMAIN, "password": "x"}, {"username": "1001", "domain": DOMAIN, "password": "y"}],
     f"1001@{DOMAIN}: listed twice"),
    ([{"username": "1003", "domain": DOMAIN}], f"1003@{DOMAIN}: password missing"),
    ([{"username": "1004", "domain": "bad_domain!", "password": "x"}], "1004@bad_domain!: domain"),
], ids=["duplicate", "missing-password", "invalid-domain"])
def test_bad_subscriber_input_fails_before_any_change(host, subscribers, message):
    before = sql(host, "CHECKSUM TABLE subscriber")
    run = converge_db(json.dumps({"sip_subscribers": subscribers}))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert message in output, output[-3000:]
    assert "opensips_db_subscribers" in output
    # it failed in the validation, before the first task that changes anything
    assert "Install the database server" not in output
    assert sql(host, "CHECKSUM TABLE subscriber") == before


# --- rows the proxies read ----------------------------------------------------------------

def test_dispatcher_rows_come_from_the_proxies_sets(host):
    rows = sql(host, "SELECT setid, destination, weight, description FROM dispatcher ORDER BY destination")
    assert rows == [["1", "sip:10.210.40.41:5060", "1", "fs1"], ["1", "sip:10.210.40.42:5060", "2", "fs2"]]


def test_address_rows_are_the_trusted_sources_and_media_servers(host):
    rows = sql(host, "SELECT ip, mask, port, proto FROM address ORDER BY ip")
    # the media servers by address, transport and their URI's port; the explicit source as declared
    assert rows == [["10.210.40.200", "32", "0", "any"], ["10.210.40.41", "32", "5060", "udp"],
                    ["10.210.40.42", "32", "5060", "udp"]]


def test_a_cdr_without_tags_is_kept(host):
    # what acc writes for a call the proxy itself ended (408, 503): NULL tags; the vendor columns
    # are NOT NULL, the role's trigger stores '' and the row is kept
    proxy = other("osdb-proxy")
    out = proxy.run(f"mysql -h {DB_IP} -u opensips -p{PROXY_PASSWORD} -N -B opensips -e \"INSERT INTO missed_calls "
                    "(method, from_tag, to_tag, callid, sip_code, sip_reason, time) "
                    "VALUES ('INVITE', 'ft', NULL, 'cdr-null-to-tag', '408', 'Request Timeout', NOW())\"")
    assert out.rc == 0, out.stderr
    assert sql(host, "SELECT to_tag, sip_code FROM missed_calls WHERE callid = 'cdr-null-to-tag'") == [["", "408"]]
    sql(host, "DELETE FROM missed_calls WHERE callid = 'cdr-null-to-tag'")


def test_the_proxy_loaded_the_dispatcher_rows_from_the_database():
    dests = destinations(other("osdb-proxy"))
    assert set(dests) == {"sip:10.210.40.41:5060", "sip:10.210.40.42:5060"}
    assert dests["sip:10.210.40.42:5060"]["weight"] in ("2", 2)


def test_changed_destination_reaches_the_running_proxy_through_the_database(host):
    """Inventory changes once (the proxies' sets); the role writes the row and reloads the proxy over MI."""
    proxy = other("osdb-proxy")
    heavier = json.dumps({"opensips_dispatcher_sets": [{"id": 1, "destinations": [
        {"uri": "sip:10.210.40.41:5060", "description": "fs1"},
        {"uri": "sip:10.210.40.42:5060", "weight": 5, "description": "fs2"}]}]})
    try:
        assert db_changed(converge_db(heavier).stdout) >= 1
        assert sql(host, "SELECT weight FROM dispatcher WHERE destination = 'sip:10.210.40.42:5060'") == [["5"]]
        assert str(destinations(proxy)["sip:10.210.40.42:5060"]["weight"]) == "5"
    finally:
        assert db_changed(converge_db().stdout) >= 1
    assert str(destinations(proxy)["sip:10.210.40.42:5060"]["weight"]) == "2"


# --- OpenSIPS on the provisioned database --------------------------------------------------

def test_register_with_a_provisioned_password_succeeds():
    client = other("osdb-client")
    result = sipkit.run_sipp(client, "register_auth", f"{PROXY_IP}:5060",
                             accounts=[sipkit.Account("1001", DOMAIN, SUBSCRIBERS["1001"])])
    assert (result.rc, result.successful, result.failed) == (0, 1, 0), result.summary()


@pytest.mark.parametrize("account", [
    sipkit.Account("1001", DOMAIN, "wrong-password"),
    sipkit.Account("1099", DOMAIN, "removed-user"),
], ids=["wrong-password", "absent-subscriber"])
def test_bad_credentials_are_rejected_by_the_proxy(account):
    result = sipkit.run_sipp(other("osdb-client"), "register_reject", f"{PROXY_IP}:5060", accounts=[account])
    assert (result.rc, result.successful) == (0, 1), result.summary()


# --- upgrade 3.4 -> release under test (side_effect.yml) -----------------------------------

@pytest.fixture(scope="module")
def upgraded(host):
    skipped = host.file(f"{UPGRADE_RECORD}/skipped")
    if skipped.exists:
        pytest.skip(skipped.content_string.strip())
    assert host.file(f"{UPGRADE_RECORD}/before.json").exists, "side_effect.yml did not run"
    return json.loads(host.file(f"{UPGRADE_RECORD}/before.json").content_string)


def test_upgrade_keeps_every_row(host, upgraded):
    assert upgraded["subscriber"] == len(SUBSCRIBERS) and upgraded["location"] == 1 and upgraded["acc"] == 1
    assert upgraded["dispatcher"] == 2 and upgraded["address"] == 3
    for table, count in upgraded.items():
        assert sql(host, f"SELECT COUNT(*) FROM {table}", db="opensips_upgrade") == [[str(count)]], table
    assert sql(host, "SELECT callid, expires FROM location", db="opensips_upgrade") == [["upgrade-test", "2000000000"]]
    assert sql(host, "SELECT duration FROM acc", db="opensips_upgrade") == [["42"]]


def test_upgrade_reaches_the_new_release_schema(host, upgraded):
    release = os.environ.get("OPENSIPS_VERSION", "3.6")
    assert sql(host, "SELECT release_name FROM sipedge_schema", db="opensips_upgrade") == [[release]]
    versions = {t: int(v) for t, v in sql(host, "SELECT table_name, table_version FROM version", db="opensips_upgrade")}
    assert {t: versions.get(t) for t in TABLE_VERSIONS} == TABLE_VERSIONS
    columns = {r[0] for r in sql(host, "SHOW COLUMNS FROM subscriber", db="opensips_upgrade")}
    if release == "3.6":
        assert "email_address" not in columns  # 3.6 dropped it
    a1 = f"1001:{DOMAIN}:{SUBSCRIBERS['1001']}".encode()
    assert sql(host, "SELECT ha1 FROM subscriber WHERE username = '1001'", db="opensips_upgrade") == [[hashlib.md5(a1).hexdigest()]]


def test_upgrade_puts_the_cdr_triggers_back(host, upgraded):
    names = {r[0] for r in sql(host, "SELECT trigger_name FROM information_schema.triggers "
                                     "WHERE trigger_schema = 'opensips_upgrade'", db="mysql")}
    assert names == {"sipedge_acc_tags", "sipedge_missed_calls_tags"}


def test_upgrade_keeps_the_old_database_as_a_backup(host, upgraded):
    backup = "opensips_upgrade_3_4_backup"
    assert sql(host, "SELECT release_name FROM sipedge_schema", db=backup) == [["3.4"]]
    assert sql(host, "SELECT email_address FROM subscriber WHERE username = '1001'", db=backup) == [["ops@db.sipedge.test"]]
    for table, count in upgraded.items():
        assert sql(host, f"SELECT COUNT(*) FROM {table}", db=backup) == [[str(count)]], table


def test_downgrade_is_refused(host, upgraded):
    record = host.file(f"{UPGRADE_RECORD}/downgrade").content_string
    assert "a downgrade to 3.4 is refused" in record, record
