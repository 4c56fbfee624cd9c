#!/usr/bin/env python3
"""sipkit-phone: REGISTER over TLS or a (secure) websocket, with digest auth.

SIPp covers UDP/TCP; this covers what a WebRTC or TLS phone does. It sends a
REGISTER, answers one 401/407 digest challenge (MD5, qop=auth or none) and
prints each final status line it received, one per line, e.g.

    401 Unauthorized
    200 OK

The exit status is 0 when the last final reply was 2xx. Only the standard
library and `websockets` (Debian: python3-websockets) are needed.

    sipkit-phone --transport wss --proxy 10.0.0.10 --port 7443 --ca ca.pem \
        --user 1001 --domain example.test --password secret
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import secrets
import socket
import ssl
import sys


def digest_header(challenge: str, method: str, uri: str, user: str, password: str, header: str) -> str:
    """Authorization/Proxy-Authorization value answering ``challenge`` (RFC 2617, MD5)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
    qop = params.get("qop", "")
    if "auth" in qop.split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return f"{header}: Digest " + ", ".join(fields)


def register(args, cseq: int, call_id: str, tag: str, auth: str = "") -> str:
    via_proto = {"tls": "TLS", "ws": "WS", "wss": "WSS"}[args.transport]
    host = args.contact_host or f"{secrets.token_hex(4)}.invalid"
    contact_transport = "ws" if args.transport in ("ws", "wss") else args.transport
    lines = [
        f"REGISTER sip:{args.domain} SIP/2.0",
        f"Via: SIP/2.0/{via_proto} {host};branch=z9hG4bK-{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{args.user}@{args.domain}>;tag={tag}",
        f"To: <sip:{args.user}@{args.domain}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{args.user}@{host};transport={contact_transport}>",
        f"Expires: {args.expires}",
        "User-Agent: sipkit-phone",
    ]
    if auth:
        lines.append(auth)
    return "\r\n".join(lines + ["Content-Length: 0", "", ""])


def split_stream(buffer: str) -> list[str]:
    """Complete SIP messages from a stream buffer (replies to REGISTER carry no body)."""
    return [m + "\r\n\r\n" for m in buffer.split("\r\n\r\n") if m.strip()]


async def exchange_ws(args, ctx, requests) -> list[str]:
    import websockets  # pylint: disable=import-outside-toplevel

    scheme = "wss" if args.transport == "wss" else "ws"
    # a browser always sends Origin; OpenSIPS refuses the handshake without one
    async with websockets.connect(f"{scheme}://{args.proxy}:{args.port}", subprotocols=["sip"],
                                  ssl=ctx if scheme == "wss" else None,
                                  origin=f"https://phone.{args.domain}") as ws:
        return await run_dialogue(args, requests, ws.send, lambda: asyncio.wait_for(ws.recv(), args.timeout))


async def run_dialogue(args, requests, send, recv) -> list[str]:
    """Send REGISTER, answer one challenge, return the final status lines."""
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    finals = []
    auth = ""
    for cseq in (1, 2):
        await send(requests(args, cseq, call_id, tag, auth))
        while True:
            reply = await recv()
            reply = reply.decode() if isinstance(reply, bytes) else reply
            code = int(reply.split(" ", 2)[1])
            if code >= 200:
                break
        finals.append(reply.split("\r\n", 1)[0].split(" ", 1)[1])
        if code not in (401, 407):
            break
        header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
        challenge = next(line.split(":", 1)[1].strip() for line in reply.split("\r\n")
                         if line.lower().startswith(header.lower() + ":"))
        auth = digest_header(challenge, "REGISTER", f"sip:{args.domain}", args.user, args.password,
                             "Authorization" if code == 401 else "Proxy-Authorization")
    return finals


async def exchange_tls(args, ctx, requests) -> list[str]:
    reader, writer = await asyncio.open_connection(args.proxy, args.port, ssl=ctx,
                                                   server_hostname=args.server_name or args.proxy)
    pending: list[str] = []

    async def send(text: str) -> None:
        writer.write(text.encode())
        await writer.drain()

    async def recv() -> str:
        buffer = ""
        while not pending:
            chunk = await asyncio.wait_for(reader.read(65536), args.timeout)
            if not chunk:
                raise RuntimeError("connection closed")
            buffer += chunk.decode()
            if buffer.endswith("\r\n\r\n"):
                pending.extend(split_stream(buffer))
        return pending.pop(0)

    try:
        return await run_dialogue(args, requests, send, recv)
    finally:
        writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transport", choices=["tls", "ws", "wss"], required=True)
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", help="CA bundle that signs the proxy's certificate")
    parser.add_argument("--server-name", help="name to verify in the certificate (default: --proxy)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--password", default="")
    parser.add_argument("--expires", type=int, default=300)
    parser.add_argument("--contact-host", help="host part of the Contact (default: a random .invalid name)")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    ctx = None
    if args.transport in ("tls", "wss"):
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if args.transport == "tls":
            finals = asyncio.run(exchange_tls(args, ctx, register))
        else:
            finals = asyncio.run(exchange_ws(args, ctx, register))
    except (OSError, ssl.SSLError, asyncio.TimeoutError, RuntimeError, socket.timeout) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return 2
    print("\n".join(finals))
    return 0 if finals and finals[-1].startswith("2") else 1


if __name__ == "__main__":
    sys.exit(main())
