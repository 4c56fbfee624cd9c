#!/usr/bin/python
"""OpenSIPS subscribers with the HA1 columns of the installed schema."""

from __future__ import annotations

DOCUMENTATION = r"""
module: opensips_db_subscribers
short_description: Add, update and remove OpenSIPS subscribers, storing digest HA1 hashes
description:
  - Writes C(ha1) = md5(user:realm:password) and, where the schema has them, C(ha1_sha256) and
    C(ha1_sha512t256) (SHA-512/256); the realm is the subscriber's domain.
  - The plaintext C(password) column stays empty unless I(store_plaintext) is true.
  - Subscribers that are not listed are left alone; C(state=absent) removes one.
  - Passwords are never returned.
options:
  subscribers:
    description: Subscribers.
    type: list
    elements: dict
    required: true
    options:
      username: {type: str, required: true}
      domain: {type: str, required: true}
      password: {type: str, no_log: true, default: ""}
      state: {type: str, choices: [present, absent], default: present}
  store_plaintext: {type: bool, default: false}
extends_documentation_fragment: [sipedge.edge.opensips_mysql]
"""

import hashlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sipedge.edge.plugins.module_utils.opensips_mysql import (  # pylint: disable=import-error
    CONNECTION_ARGS, HAS_PYMYSQL, columns_of, connect, query, quote)

HASHES = {"ha1": "md5", "ha1_sha256": "sha256", "ha1_sha512t256": "sha512_256", "ha1b": None}


def digest(algorithm, text):
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


def wanted_columns(sub, columns, store_plaintext):
    values = {}
    a1 = f"{sub['username']}:{sub['domain']}:{sub['password']}"
    for column, algorithm in HASHES.items():
        if column in columns and algorithm:
            values[column] = digest(algorithm, a1)
    if "password" in columns:
        values["password"] = sub["password"] if store_plaintext else ""
    return values


def main():
    module = AnsibleModule(
        argument_spec=dict(
            CONNECTION_ARGS,
            subscribers=dict(type="list", elements="dict", required=True, options=dict(
                username=dict(type="str", required=True),
                domain=dict(type="str", required=True),
                password=dict(type="str", no_log=True, default=""),
                state=dict(type="str", choices=["present", "absent"], default="present"),
            )),
            store_plaintext=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg="PyMySQL is needed on the host that runs opensips_db_subscribers (python3-pymysql)")
    p = module.params
    db = p["name"]
    seen = set()
    for sub in p["subscribers"]:
        key = f"{sub['username']}@{sub['domain']}"
        if key in seen:
            module.fail_json(msg=f"subscriber {key} is listed twice")
        seen.add(key)
        if sub["state"] == "present" and not sub["password"]:
            module.fail_json(msg=f"subscriber {key} has no password")
    conn = connect(p)
    table = f"{quote(db)}.subscriber"
    columns = set(columns_of(conn, db, "subscriber"))
    if not columns:
        module.fail_json(msg=f"{db}.subscriber does not exist (import the auth_db schema first)")
    added, updated, removed = [], [], []
    for sub in p["subscribers"]:
        key = f"{sub['username']}@{sub['domain']}"
        where = (sub["username"], sub["domain"])
        if sub["state"] == "absent":
            if query(conn, f"SELECT id FROM {table} WHERE username = %s AND domain = %s", where):
                removed.append(key)
                if not module.check_mode:
                    query(conn, f"DELETE FROM {table} WHERE username = %s AND domain = %s", where)
            continue
        values = wanted_columns(sub, columns, p["store_plaintext"])
        names = sorted(values)
        rows = query(conn, f"SELECT {', '.join(quote(c) for c in names)} FROM {table} WHERE username = %s AND domain = %s",
                     where)
        if not rows:
            added.append(key)
            if not module.check_mode:
                cols = ["username", "domain"] + names
                query(conn, f"INSERT INTO {table} ({', '.join(quote(c) for c in cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                      list(where) + [values[c] for c in names])
        elif dict(zip(names, rows[0])) != values:
            updated.append(key)
            if not module.check_mode:
                query(conn, f"UPDATE {table} SET {', '.join(f'{quote(c)} = %s' for c in names)} "
                      "WHERE username = %s AND domain = %s", [values[c] for c in names] + list(where))
    module.exit_json(changed=bool(added or updated or removed), added=added, updated=updated, removed=removed,
                     hash_columns=sorted(c for c in HASHES if c in columns))


if __name__ == "__main__":
    main()
