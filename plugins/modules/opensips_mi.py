#!/usr/bin/python
"""Ansible module: run an OpenSIPS MI command over the local FIFO."""

from __future__ import annotations

DOCUMENTATION = r"""
module: opensips_mi
short_description: Run an OpenSIPS management (MI) command on the proxy host
description:
  - Sends one JSON-RPC MI command to the OpenSIPS running on the target host
    through its local FIFO (module C(mi_fifo)), the management channel the
    toolkit uses everywhere; no MI is served on the network.
  - Read-only commands (C(ds_list), C(ul_dump), C(dlg_list), C(get_statistics),
    C(uptime), C(version), ...) never report a change and also run in check mode.
  - C(ds_set_state) is idempotent - it reads C(ds_list) first and reports a
    change only when the destination's state differs.
  - Any other command reports a change; in check mode it is not sent.
options:
  command: {description: MI command name, e.g. C(ds_reload)., type: str, required: true}
  params:
    description: Its parameters (a mapping of named parameters, or a list).
    type: raw
  fifo: {description: The MI FIFO (the opensips role's C(opensips_mi_fifo))., type: path, default: /run/opensips/opensips_fifo}
  timeout: {description: Seconds to wait for the reply., type: float, default: 10}
  missing_ok:
    description: When OpenSIPS is not running (no FIFO), succeed with C(skipped_reason) instead of failing.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Reload the dispatcher table
  opensips_mi:
    command: ds_reload

- name: Drain a media server (changed only when it was not inactive yet)
  opensips_mi:
    command: ds_set_state
    params: {state: i, group: "1", address: "sip:10.20.0.41:5060"}

- name: Active dialogs
  opensips_mi:
    command: get_statistics
    params: {statistics: [active_dialogs]}
  register: stats
"""

RETURN = r"""
result: {description: The JSON-RPC result of the command., type: raw, returned: success}
skipped_reason: {description: Why nothing was sent (missing_ok and no OpenSIPS)., type: str, returned: when skipped}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sipedge.edge.plugins.module_utils.opensips_mi import MIError, mi_call

READ_ONLY = {
    "ds_list", "ul_dump", "ul_show_contact", "dlg_list", "dlg_list_ctx", "get_statistics", "list_statistics",
    "uptime", "version", "which", "ps", "address_dump", "subnet_dump", "list_tcp_conns", "tls_list",
    "rtpengine_show", "rtpproxy_show", "cache_fetch", "clusterer_list", "clusterer_list_shtags", "dbt_dump",
}
STATE_LETTER = {"a": "Active", "i": "Inactive", "p": "Probing"}


def current_ds_state(ds_list, group, address):
    """The state ds_list reports for ``address`` in ``group`` ('' when it is not there)."""
    for part in (ds_list or {}).get("PARTITIONS", []):
        for dset in part.get("SETS", []):
            if str(dset.get("id")) != str(group):
                continue
            for dest in dset.get("Destinations", []):
                if dest.get("URI") == address:
                    return dest.get("state", "")
    return ""


def main():
    module = AnsibleModule(
        argument_spec={
            "command": {"type": "str", "required": True},
            "params": {"type": "raw"},
            "fifo": {"type": "path", "default": "/run/opensips/opensips_fifo"},
            "timeout": {"type": "float", "default": 10.0},
            "missing_ok": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    command, params, fifo = p["command"], p["params"], p["fifo"]
    def call(method, args=None):
        try:
            return mi_call(method, args, fifo=fifo, timeout=p["timeout"])
        except MIError as exc:
            if exc.not_running and p["missing_ok"]:
                module.exit_json(changed=False, skipped_reason=str(exc))
            module.fail_json(msg=str(exc), command=method, mi_code=exc.code)
        return None

    if command in READ_ONLY:
        module.exit_json(changed=False, result=call(command, params))

    if command == "ds_set_state":
        if not isinstance(params, dict) or not {"state", "group", "address"} <= set(params):
            module.fail_json(msg="ds_set_state needs params state, group and address")
        wanted = STATE_LETTER.get(str(params["state"])[:1].lower())
        if wanted is None:
            module.fail_json(msg=f"ds_set_state: state must be a, i or p (got {params['state']})")
        before = current_ds_state(call("ds_list"), params["group"], params["address"])
        if not before:
            module.fail_json(msg=f"ds_set_state: {params['address']} is not in dispatcher set {params['group']}")
        if before == wanted:
            module.exit_json(changed=False, result="OK", state=before)
        if module.check_mode:
            module.exit_json(changed=True, state=before)
        module.exit_json(changed=True, result=call(command, params), state=wanted, previous_state=before)

    if module.check_mode:
        module.exit_json(changed=True)
    module.exit_json(changed=True, result=call(command, params))


if __name__ == "__main__":
    main()
