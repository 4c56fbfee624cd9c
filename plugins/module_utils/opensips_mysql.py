"""Shared helpers of the opensips_db modules: connection, schema files, releases."""

from __future__ import annotations

import os
import re

try:
    import pymysql
    from pymysql.constants import CLIENT

    HAS_PYMYSQL = True
except ImportError:  # reported by the modules with fail_json
    HAS_PYMYSQL = False

# The credential is read from an option file ([client] user/password, mode 0600)
# so that it never travels in task arguments or output.
CONNECTION_ARGS = dict(
    login_defaults_file=dict(type="path", required=True),
    login_host=dict(type="str", default=""),
    login_port=dict(type="int", default=3306),
    login_unix_socket=dict(type="str", default=""),
    name=dict(type="str", required=True),
)

_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+`?(\w+)`?", re.IGNORECASE | re.MULTILINE)
_VERSION = re.compile(r"INSERT\s+INTO\s+version\s*\(table_name,\s*table_version\)\s*values\s*\('(\w+)',\s*'(\d+)'\)",
                      re.IGNORECASE)
IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,64}$")
RELEASE = re.compile(r"^(\d+)\.(\d+)$")

# Table the role keeps next to the vendor's tables: which release (and modules)
# the schema was created for, so that an upgrade knows where it starts.
META_TABLE = "sipedge_schema"


def connect(params, database=None):
    """A connection with autocommit on; multi-statement for the vendor's SQL files."""
    kwargs = dict(read_default_file=params["login_defaults_file"], read_default_group="client", autocommit=True,
                  charset="utf8mb4", client_flag=CLIENT.MULTI_STATEMENTS, connect_timeout=10)
    if params.get("login_unix_socket"):
        kwargs["unix_socket"] = params["login_unix_socket"]
    else:
        kwargs["host"] = params.get("login_host") or "127.0.0.1"
        kwargs["port"] = params.get("login_port") or 3306
    if database:
        kwargs["database"] = database
    return pymysql.connect(**kwargs)


def quote(name):
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f"`{name}`"


def query(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def run_script(conn, text):
    """Run a whole vendor SQL file (plain statements, no DELIMITER)."""
    with conn.cursor() as cur:
        cur.execute(text)
        while cur.nextset():
            pass


def release_key(release):
    match = RELEASE.match(str(release))
    if not match:
        raise ValueError(f"not a release like 3.6: {release!r}")
    return int(match.group(1)), int(match.group(2))


class SchemaFile:
    """One vendor `<module>-create.sql`: its tables and the version rows it inserts."""

    def __init__(self, module, path):
        self.module = module
        self.path = path
        with open(path, encoding="utf-8") as handle:
            self.text = handle.read()
        self.tables = _CREATE.findall(self.text)
        self.versions = {t: int(v) for t, v in _VERSION.findall(self.text)}


def schema_files(schema_dir, modules):
    """`standard` first, then each module's file; a missing file is an error naming it."""
    out, missing = [], []
    for module in ["standard"] + [m for m in modules if m != "standard"]:
        path = os.path.join(schema_dir, f"{module}-create.sql")
        if os.path.isfile(path):
            out.append(SchemaFile(module, path))
        else:
            missing.append(path)
    return out, missing


def database_exists(conn, name):
    return bool(query(conn, "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,)))


def tables_of(conn, name):
    rows = query(conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,))
    return {r[0] for r in rows}


def columns_of(conn, database, table):
    rows = query(conn, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                 "ORDER BY ordinal_position", (database, table))
    return [r[0] for r in rows]


def version_rows(conn, database):
    if "version" not in tables_of(conn, database):
        return {}
    return {t: int(v) for t, v in query(conn, f"SELECT table_name, table_version FROM {quote(database)}.version")}
