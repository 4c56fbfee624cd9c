"""OpenSIPS management interface (MI) over the local FIFO (mi_fifo), JSON-RPC 2.0.

The one MI client of the toolkit: the opensips_mi Ansible module imports it,
and the test kit runs this very file on a proxy host as a command:

    python3 opensips_mi.py [--fifo PATH] METHOD [JSON-PARAMS]

mi_fifo protocol (OpenSIPS 3.x): one line ``:<reply fifo name>:<JSON-RPC request>``
written to the server FIFO; OpenSIPS writes the JSON-RPC reply into
``<reply_dir><reply fifo name>``. The reply FIFO is created next to the server
FIFO (the opensips role sets mi_fifo's reply_dir to that directory, which a
docker-mode proxy shares with the host) and owned like the server FIFO, so an
OpenSIPS that runs as its own user can open it. Only the local host can use it:
nothing on the network reaches the MI this way.

Standard library only: it also runs on hosts without Ansible.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import stat
import sys
import time

DEFAULT_FIFO = "/run/opensips/opensips_fifo"


class MIError(Exception):
    """The MI could not be reached, or it answered with a JSON-RPC error."""

    def __init__(self, message: str, code: int | None = None, not_running: bool = False):
        super().__init__(message)
        self.code = code
        self.not_running = not_running  # no OpenSIPS behind the FIFO: nothing was sent


def mi_call(method: str, params=None, fifo: str = DEFAULT_FIFO, timeout: float = 10.0):
    """Run one MI command and return its JSON-RPC ``result``; raise MIError on an error reply or none."""
    if not method or any(c in method for c in ":\r\n \t"):
        raise MIError(f"invalid MI command name {method!r}")
    try:
        server = os.stat(fifo)
    except OSError as exc:
        raise MIError(f"no OpenSIPS MI FIFO at {fifo} ({exc.strerror}): is OpenSIPS running?",
                      not_running=True) from exc
    if not stat.S_ISFIFO(server.st_mode):
        raise MIError(f"{fifo} is not a FIFO")
    directory = os.path.dirname(fifo)
    name = f"sipedge_mi_{os.getpid()}_{secrets.token_hex(4)}"
    reply = os.path.join(directory, name)
    request = {"jsonrpc": "2.0", "method": method, "id": secrets.randbelow(1 << 30)}
    if params not in (None, {}, []):
        request["params"] = params
    line = f":{name}:{json.dumps(request, separators=(',', ':'))}\n".encode()
    os.mkfifo(reply, 0o600)
    try:
        os.chown(reply, server.st_uid, server.st_gid)
        # opened before the request is written, non-blocking: the reply cannot be missed
        reader = os.open(reply, os.O_RDONLY | os.O_NONBLOCK)
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            os.close(reader)
            raise MIError(f"cannot write to {fifo} ({exc.strerror}): is OpenSIPS running?",
                          not_running=True) from exc
        try:
            os.write(writer, line)
        finally:
            os.close(writer)
        data = _read_reply(reader, timeout, fifo)
    finally:
        try:
            os.unlink(reply)
        except OSError:
            pass
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise MIError(f"MI {method}: unreadable reply {data[:200]!r}") from exc
    if "error" in answer:
        err = answer["error"] or {}
        raise MIError(f"MI {method}: {err.get('message', err)}", err.get("code"))
    return answer.get("result")


def _read_reply(reader: int, timeout: float, fifo: str) -> str:
    """Everything OpenSIPS writes to the reply FIFO until it closes it."""
    chunks, deadline, opened = [], time.monotonic() + timeout, False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MIError(f"no MI reply through {fifo} within {timeout:g} s")
            ready, _, _ = select.select([reader], [], [], min(left, 0.2))
            if not ready:
                continue
            chunk = os.read(reader, 65536)
            if chunk:
                chunks.append(chunk)
                opened = True
            elif opened:
                return b"".join(chunks).decode(errors="replace")
            else:
                time.sleep(0.02)  # no writer yet: EOF until OpenSIPS opens the FIFO
    finally:
        os.close(reader)


def main(argv: list[str]) -> int:
    fifo = DEFAULT_FIFO
    if len(argv) >= 2 and argv[0] == "--fifo":
        fifo, argv = argv[1], argv[2:]
    if not argv or len(argv) > 2:
        print("usage: opensips_mi.py [--fifo PATH] METHOD [JSON-PARAMS]", file=sys.stderr)
        return 2
    try:
        result = mi_call(argv[0], json.loads(argv[1]) if len(argv) == 2 else None, fifo=fifo)
    except (MIError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({"result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
