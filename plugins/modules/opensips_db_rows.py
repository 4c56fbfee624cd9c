#!/usr/bin/python
"""Make an OpenSIPS provisioning table hold exactly the given rows."""

from __future__ import annotations

DOCUMENTATION = r"""
module: opensips_db_rows
short_description: Keep an OpenSIPS provisioning table (dispatcher, address) equal to inventory
description:
  - Rows are matched on I(key) columns; missing rows are inserted, differing ones updated and, with
    I(exclusive), rows that inventory does not list are deleted. C(id) is left to AUTO_INCREMENT.
  - Values compare as text; C(null) stands for SQL NULL.
options:
  table: {type: str, required: true}
  key: {type: list, elements: str, required: true}
  rows: {type: list, elements: dict, required: true}
  exclusive: {type: bool, default: true}
extends_documentation_fragment: [sipedge.edge.opensips_mysql]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sipedge.edge.plugins.module_utils.opensips_mysql import (  # pylint: disable=import-error
    CONNECTION_ARGS, HAS_PYMYSQL, columns_of, connect, query, quote)


def text(value):
    return None if value is None else str(value)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            CONNECTION_ARGS,
            table=dict(type="str", required=True),
            key=dict(type="list", elements="str", required=True, no_log=False),
            rows=dict(type="list", elements="dict", required=True),
            exclusive=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg="PyMySQL is needed on the host that runs opensips_db_rows (python3-pymysql)")
    p = module.params
    db, key = p["name"], p["key"]
    conn = connect(p)
    columns = columns_of(conn, db, p["table"])
    if not columns:
        module.fail_json(msg=f"{db}.{p['table']} does not exist (import its module's schema first)")
    wanted_cols = sorted({c for row in p["rows"] for c in row} | set(key))
    unknown = [c for c in wanted_cols if c not in columns]
    if unknown:
        module.fail_json(msg=f"{db}.{p['table']} has no column(s) {', '.join(unknown)}")
    table = f"{quote(db)}.{quote(p['table'])}"
    wanted = {}
    for row in p["rows"]:
        k = tuple(text(row.get(c)) for c in key)
        if k in wanted:
            module.fail_json(msg=f"{p['table']}: two rows with {dict(zip(key, k))}")
        wanted[k] = {c: text(row[c]) for c in row}
    have = {}
    for values in query(conn, f"SELECT id, {', '.join(quote(c) for c in wanted_cols)} FROM {table}"):
        row = dict(zip(wanted_cols, (text(v) for v in values[1:])))
        have.setdefault(tuple(row[c] for c in key), []).append((values[0], row))
    added, updated, removed = [], [], []
    for k, row in wanted.items():
        label = ":".join(str(v) for v in k)
        existing = have.pop(k, [])
        if not existing:
            added.append(label)
            if not module.check_mode:
                cols = sorted(row)
                query(conn, f"INSERT INTO {table} ({', '.join(quote(c) for c in cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                      [row[c] for c in cols])
            continue
        (row_id, current), duplicates = existing[0], existing[1:]
        if any(current[c] != row[c] for c in row):
            updated.append(label)
            if not module.check_mode:
                cols = sorted(row)
                query(conn, f"UPDATE {table} SET {', '.join(f'{quote(c)} = %s' for c in cols)} WHERE id = %s",
                      [row[c] for c in cols] + [row_id])
        have[k] = duplicates  # duplicates of a listed row count as unlisted
    if p["exclusive"]:
        for k, rest in have.items():
            for row_id, _ in rest:
                removed.append(":".join(str(v) for v in k))
                if not module.check_mode:
                    query(conn, f"DELETE FROM {table} WHERE id = %s", (row_id,))
    module.exit_json(changed=bool(added or updated or removed), added=added, updated=updated, removed=removed)


if __name__ == "__main__":
    main()
