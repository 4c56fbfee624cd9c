#!/usr/bin/python
"""Ansible module: send a SIP OPTIONS over UDP and report the reply (a health probe)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sip_options_probe
short_description: Probe a SIP server with OPTIONS over UDP
description:
  - Sends one OPTIONS request (retransmitted as RFC 3261 timer A does) and
    waits for a final reply. Fails when none comes within O(timeout), or when
    its code is not in O(accept_codes). Changes nothing.
options:
  host: {description: Address of the SIP server., type: str, required: true}
  port: {description: Its UDP port., type: int, default: 5060}
  timeout: {description: Seconds to wait for a final reply., type: float, default: 4}
  accept_codes:
    description: Final reply codes that count as healthy.
    type: list
    elements: int
    default: [200]
"""

RETURN = r"""
status_code: {description: Code of the final reply (0 when none came)., type: int, returned: always}
reason: {description: Reason phrase of the final reply., type: str, returned: always}
elapsed_ms: {description: Time to the final reply., type: float, returned: always}
"""

import secrets
import socket
import time

from ansible.module_utils.basic import AnsibleModule


def options_request(host: str, port: int, local: tuple[str, int], branch: str, tag: str, call_id: str) -> bytes:
    target = f"[{host}]" if ":" in host else host
    via_host = f"[{local[0]}]" if ":" in local[0] else local[0]
    return (
        f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:{local[1]};branch=z9hG4bK-{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{via_host}>;tag={tag}\r\n"
        f"To: <sip:{target}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "User-Agent: sipedge-upgrade-probe\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def probe(host: str, port: int, timeout: float) -> tuple[int, str, float]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.connect((host, port))
        local = sock.getsockname()[:2]
        branch, tag, call_id = secrets.token_hex(8), secrets.token_hex(4), secrets.token_hex(12)
        request = options_request(host, port, local, branch, tag, call_id)
        start = time.monotonic()
        deadline = start + timeout
        interval = 0.5
        next_send = start
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_send:
                sock.send(request)
                next_send = now + interval
                interval = min(interval * 2, 4.0)
            sock.settimeout(max(0.05, min(next_send, deadline) - time.monotonic()))
            try:
                data = sock.recv(65535).decode(errors="replace")
            except (socket.timeout, ConnectionRefusedError):
                continue
            first = data.split("\r\n", 1)[0].split(" ", 2)
            if (len(first) >= 2 and first[0] == "SIP/2.0" and first[1].isdigit() and int(first[1]) >= 200
                    and call_id in data):
                return int(first[1]), first[2] if len(first) > 2 else "", (time.monotonic() - start) * 1000
        return 0, "", (time.monotonic() - start) * 1000
    finally:
        sock.close()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 5060},
            "timeout": {"type": "float", "default": 4.0},
            "accept_codes": {"type": "list", "elements": "int", "default": [200]},
        },
        supports_check_mode=True,
    )
    p = module.params
    code, reason, elapsed = probe(p["host"], p["port"], p["timeout"])
    result = {"changed": False, "status_code": code, "reason": reason, "elapsed_ms": round(elapsed, 1)}
    if code == 0:
        module.fail_json(msg=f"no SIP reply from {p['host']}:{p['port']} to OPTIONS within {p['timeout']} s", **result)
    if code not in p["accept_codes"]:
        module.fail_json(msg=f"{p['host']}:{p['port']} answered OPTIONS with {code} {reason}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
