#!/usr/bin/python
"""Create or migrate an OpenSIPS database from the vendor's own SQL files."""

from __future__ import annotations

DOCUMENTATION = r"""
module: opensips_db_schema
short_description: OpenSIPS MySQL/MariaDB schema from the vendor's SQL, idempotent, with release upgrades
description:
  - Imports C(standard-create.sql) and C(<module>-create.sql) from I(schema_dir) (the files of the OpenSIPS
    release, from its package or image). A module whose tables all exist is not imported again; a module with
    only some of its tables present is an error.
  - Checks that the C(version) rows equal what the release's files insert, which is what OpenSIPS checks at start.
  - When I(release) is newer than the release the database was created for, migrates the way
    C(opensips-cli database migrate) does, without prompts; a new database from the new release's files, every
    row copied over (columns the new schema dropped are left behind), row counts compared, then an atomic
    C(RENAME TABLE) swap that keeps the old tables in a backup database. The live database keeps its name,
    so grants and the proxies' C(db_url) stay valid.
  - A downgrade is refused.
options:
  schema_dir: {description: Directory with the release's C(*-create.sql)., type: path, required: true}
  modules: {description: Modules to import besides C(standard)., type: list, elements: str, default: []}
  release: {description: OpenSIPS release of I(schema_dir) (C(3.6))., type: str, required: true}
  current_release:
    description: Release an existing database without this role's C(sipedge_schema) table was created for.
    type: str
    default: ""
  encoding: {description: Character set of a new database., type: str, default: utf8mb4}
extends_documentation_fragment: [sipedge.edge.opensips_mysql]
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sipedge.edge.plugins.module_utils.opensips_mysql import (  # pylint: disable=import-error
    CONNECTION_ARGS, HAS_PYMYSQL, META_TABLE, columns_of, connect, database_exists, query, quote, release_key,
    run_script, schema_files, tables_of, version_rows)


class SchemaError(Exception):
    pass


def read_meta(conn, db, tables):
    if META_TABLE not in tables:
        return None, []
    rows = query(conn, f"SELECT release_name, modules FROM {quote(db)}.{META_TABLE} WHERE id = 1")
    if not rows:
        return None, []
    return rows[0][0], [m for m in (rows[0][1] or "").split(",") if m]


def write_meta(conn, db, release, modules):
    run_script(conn, f"CREATE TABLE IF NOT EXISTS {quote(db)}.{META_TABLE} (id INT PRIMARY KEY, release_name VARCHAR(16) "
                     "NOT NULL, modules TEXT NOT NULL, updated DATETIME NOT NULL) ENGINE=InnoDB")
    query(conn, f"REPLACE INTO {quote(db)}.{META_TABLE} (id, release_name, modules, updated) VALUES (1, %s, %s, %s)",
          (release, ",".join(sorted(set(modules))), datetime.datetime.now().replace(microsecond=0)))


def infer_release(conn, db, tables):
    """The release of a schema created by other tooling, from what changed between 3.4, 3.5 and 3.6."""
    if "subscriber" in tables and "email_address" not in columns_of(conn, db, "subscriber"):
        return "3.6"
    if "dispatcher" in tables:
        nullable = query(conn, "SELECT is_nullable FROM information_schema.columns WHERE table_schema = %s AND "
                         "table_name = 'dispatcher' AND column_name = 'attrs'", (db,))
        if nullable:
            return "3.5" if nullable[0][0] == "YES" else "3.4"
    return None


def check_versions(conn, db, files):
    have = version_rows(conn, db)
    wrong = [f"{t} has version {have.get(t, 'none')}, the release expects {v}"
             for f in files for t, v in f.versions.items() if have.get(t) != v]
    if wrong:
        raise SchemaError("version rows do not match the release: " + "; ".join(wrong))
    return {t: v for f in files for t, v in f.versions.items()}


def import_missing(conn, db, files, tables, check_mode):
    """Import each file none of whose tables exist; a partly present module is an error."""
    imported = []
    for f in files:
        present = [t for t in f.tables if t in tables]
        if len(present) == len(f.tables):
            continue
        if present:
            raise SchemaError(f"module {f.module} is only partly present in {db} (has {', '.join(present)}, lacks "
                              f"{', '.join(t for t in f.tables if t not in tables)}); fix or drop those tables by hand")
        imported.append(f.module)
        if not check_mode:
            run_script(conn, f"USE {quote(db)};\n" + f.text)
    return imported


def count(conn, db, table):
    return query(conn, f"SELECT COUNT(*) FROM {quote(db)}.{quote(table)}")[0][0]


def migrate(module, conn, db, current, files):
    """New schema in a staging database, every row copied, counts compared, then an atomic swap."""
    p = module.params
    staging = f"{db}_migrating"[:64]
    backup_base = f"{db}_{current.replace('.', '_')}_backup"[:60]
    backup, n = backup_base, 1
    while database_exists(conn, backup):
        n += 1
        backup = f"{backup_base}_{n}"
    old_tables = sorted(tables_of(conn, db) - {"version", META_TABLE})
    result = dict(backup=backup, row_counts={}, dropped_columns={})
    if module.check_mode:
        return result
    # A staging database left by an interrupted run holds nothing the live one lacks.
    run_script(conn, f"DROP DATABASE IF EXISTS {quote(staging)}; "
                     f"CREATE DATABASE {quote(staging)} CHARACTER SET {p['encoding']}")
    try:
        for f in files:
            run_script(conn, f"USE {quote(staging)};\n" + f.text)
        new_tables = tables_of(conn, staging)
        old_versions = version_rows(conn, db)
        for table in old_tables:
            if table in new_tables:
                old_cols, new_cols = columns_of(conn, db, table), columns_of(conn, staging, table)
                cols = ", ".join(quote(c) for c in old_cols if c in new_cols)
                dropped = [c for c in old_cols if c not in new_cols]
                if dropped:
                    result["dropped_columns"][table] = dropped
                query(conn, f"INSERT INTO {quote(staging)}.{quote(table)} ({cols}) SELECT {cols} FROM {quote(db)}.{quote(table)}")
            else:
                # not part of the new release's selected modules: carried over unchanged
                query(conn, f"CREATE TABLE {quote(staging)}.{quote(table)} LIKE {quote(db)}.{quote(table)}")
                query(conn, f"INSERT INTO {quote(staging)}.{quote(table)} SELECT * FROM {quote(db)}.{quote(table)}")
                if table in old_versions:
                    query(conn, f"INSERT INTO {quote(staging)}.version (table_name, table_version) VALUES (%s, %s)",
                          (table, old_versions[table]))
            before, after = count(conn, db, table), count(conn, staging, table)
            if before != after:
                raise SchemaError(f"migration copied {after} of {before} rows of {table}; the live database is unchanged")
            result["row_counts"][table] = after
        check_versions(conn, staging, files)
        live = sorted(tables_of(conn, db))
        renames = [f"{quote(db)}.{quote(t)} TO {quote(backup)}.{quote(t)}" for t in live]
        renames += [f"{quote(staging)}.{quote(t)} TO {quote(db)}.{quote(t)}" for t in sorted(tables_of(conn, staging))]
        run_script(conn, f"CREATE DATABASE {quote(backup)} CHARACTER SET {p['encoding']}")
        # a table with triggers cannot move to another database: the role's own
        # triggers (sipedge_*) go, and the role puts them back on the new tables
        for row in query(conn, "SELECT trigger_name FROM information_schema.triggers "
                               "WHERE trigger_schema = %s AND trigger_name LIKE 'sipedge\\_%%'", (db,)):
            run_script(conn, f"DROP TRIGGER {quote(db)}.{quote(row[0])}")
        run_script(conn, "RENAME TABLE " + ", ".join(renames))
    finally:
        run_script(conn, f"DROP DATABASE IF EXISTS {quote(staging)}")
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            CONNECTION_ARGS,
            schema_dir=dict(type="path", required=True),
            modules=dict(type="list", elements="str", default=[]),
            release=dict(type="str", required=True),
            current_release=dict(type="str", default=""),
            encoding=dict(type="str", default="utf8mb4", choices=["utf8mb4", "utf8mb3", "utf8", "latin1"]),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg="PyMySQL is needed on the host that runs opensips_db_schema (python3-pymysql)")
    p = module.params
    db, target = p["name"], p["release"]
    try:
        quote(db)
        release_key(target)
        files, missing = schema_files(p["schema_dir"], p["modules"])
        if missing:
            raise SchemaError("the release's SQL has no file " + ", ".join(missing) + " (module name misspelt, or "
                              "a package/image without the MySQL schema)")
        conn = connect(p)
        result = dict(changed=False, name=db, release=target, previous_release=None, imported=[], backup=None)
        if not database_exists(conn, db):
            result["changed"] = True
            if module.check_mode:
                result["imported"] = [f.module for f in files]
                module.exit_json(**result)
            run_script(conn, f"CREATE DATABASE {quote(db)} CHARACTER SET {p['encoding']}")
        tables = tables_of(conn, db)
        meta_release, meta_modules = read_meta(conn, db, tables)
        vendor_tables = tables - {META_TABLE}
        current = meta_release or p["current_release"] or (infer_release(conn, db, vendor_tables) if vendor_tables else None)
        if vendor_tables and not current:
            raise SchemaError(f"{db} has tables but no record of the release it was created for; set "
                              "opensips_db_schema_current_release")
        if current and release_key(current) > release_key(target):
            raise SchemaError(f"{db} holds the OpenSIPS {current} schema; a downgrade to {target} is refused (restore "
                              f"the backup database {db}_{target.replace('.', '_')}_backup if one exists)")
        if current and release_key(current) < release_key(target):
            # Carry the modules the old schema had over to the new one as well.
            files, _ = schema_files(p["schema_dir"], sorted(set(p["modules"]) | set(meta_modules)))
            result.update(migrate(module, conn, db, current, files), changed=True, previous_release=current)
            tables = tables_of(conn, db)
        result["imported"] = import_missing(conn, db, files, tables, module.check_mode)
        if not (module.check_mode and result["imported"]):
            result["versions"] = check_versions(conn, db, files)
        if meta_release != target or not set(p["modules"]) <= set(meta_modules) or result["imported"]:
            if not module.check_mode:
                write_meta(conn, db, target, set(p["modules"]) | set(meta_modules))
            result["changed"] = True
        module.exit_json(**result)
    except SchemaError as err:
        module.fail_json(msg=str(err))
    except (ValueError, pymysql_error()) as err:
        module.fail_json(msg=f"{db}: {err}")


def pymysql_error():
    import pymysql  # pylint: disable=import-outside-toplevel
    return pymysql.err.MySQLError


if __name__ == "__main__":
    main()
