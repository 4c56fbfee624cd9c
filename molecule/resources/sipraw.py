#!/usr/bin/env python3
"""Hand-written SIP over UDP, for the attack tests: run on a client host, it
sends what a hostile or broken client would and reports what came back.

    python3 sipraw.py '<json job>'      # prints one JSON object

Standard library only (it runs on the test containers). Jobs (``action``):

- ``send``: send ``messages`` (SIP text; ``{local}``, ``{ip}``, ``{branch}`` (one
  per job) and ``{n}`` (the message's index) are filled in) to ``target`` and collect what arrives for ``wait`` seconds, on the
  sending socket and on an optional ``listen_port`` (a foreign host the proxy
  must never relay to). ``pace`` spaces the messages.
- ``register``: a digest REGISTER as a phone sends it: an unauthenticated
  REGISTER, then the answer to the 401 challenge computed with
  ``auth_user``/``password`` for the request of ``user`` (To/From), with
  ``header`` (Authorization or Proxy-Authorization) and ``decoys`` (extra
  header lines placed before or after the credentials, ``decoy_first``).
- ``spoof``: send ``messages`` as raw IPv4/UDP datagrams whose source is
  ``source`` (``{ip, port}``: an address the sender does not own, e.g. a
  media server's), to ``target`` (needs CAP_NET_RAW). Nothing can come back:
  replies go to the forged source.
- ``invite``: the same for an INVITE to ``callee`` claiming ``from_user`` and
  answering the 407 with ``auth_user``'s credentials; the call is cancelled
  once a provisional or final reply came.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import select
import socket
import struct
import sys
import time


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (SIP digest is MD5)


def token() -> str:
    return secrets.token_hex(6)


class Phone:
    def __init__(self, proxy: str, port: int, local_port: int = 0, listen_port: int = 0):
        self.proxy = (proxy, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", local_port))
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(self.proxy)
        self.ip = probe.getsockname()[0]
        probe.close()
        self.port = self.sock.getsockname()[1]
        self.listener = None
        if listen_port:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.listener.bind(("0.0.0.0", listen_port))
        self.foreign: list[str] = []

    @property
    def local(self) -> str:
        return f"{self.ip}:{self.port}"

    def send(self, text: str) -> None:
        self.sock.sendto(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(), self.proxy)

    def collect(self, wait: float, until=None) -> list[str]:
        """Messages that arrive within ``wait`` s (stops early once ``until(msg)`` is true)."""
        got, deadline = [], time.monotonic() + wait
        socks = [self.sock] + ([self.listener] if self.listener else [])
        while time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], max(0.0, deadline - time.monotonic()))
            for s in ready:
                data = s.recv(65535).decode(errors="replace")
                if s is self.listener:
                    self.foreign.append(data)
                else:
                    got.append(data)
                    if until and until(data):
                        return got
        return got


def code(message: str) -> int:
    m = re.match(r"SIP/2\.0 (\d{3})", message)
    return int(m.group(1)) if m else 0


def header(message: str, name: str) -> str:
    m = re.search(rf"^{name}\s*:\s*(.*)$", message, re.M | re.I)
    return m.group(1).strip() if m else ""


def challenge(message: str) -> dict:
    value = header(message, "WWW-Authenticate") or header(message, "Proxy-Authenticate")
    return dict(re.findall(r'(\w+)="?([^",]*)"?', value))


def credentials(kind_user: str, password: str, realm: str, nonce: str, method: str, uri: str, qop: str) -> str:
    ha1 = md5(f"{kind_user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    if qop:
        cnonce, nc = token(), "00000001"
        resp = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return (f'Digest username="{kind_user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{resp}", algorithm=MD5, qop=auth, cnonce="{cnonce}", nc={nc}')
    resp = md5(f"{ha1}:{nonce}:{ha2}")
    return f'Digest username="{kind_user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}", algorithm=MD5'


def final(messages: list[str]) -> int:
    codes = [code(m) for m in messages if code(m) >= 200]
    return codes[-1] if codes else 0


def request(method: str, ruri: str, phone: Phone, from_uri: str, to_uri: str, call_id: str, cseq: int,
            tag: str, extra: list[str], contact: str = "", body: str = "", to_tag: str = "") -> str:
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {phone.local};branch=z9hG4bK{token()};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={tag}",
        f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    lines += extra
    if body:
        lines += ["Content-Type: application/sdp", f"Content-Length: {len(body.encode())}", "", body]
    else:
        lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


SDP = ("v=0\r\no=raw 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def do_register(job: dict, phone: Phone) -> dict:
    domain, user = job["domain"], job["user"]
    aor = f"sip:{user}@{domain}"
    contact = job.get("contact") or f"sip:{user}@{phone.local}"
    call_id, tag, ruri = token() + "@raw", token(), f"sip:{domain}"
    base = [f"Expires: {job.get('expires', 300)}", "User-Agent: sipraw"]
    phone.send(request("REGISTER", ruri, phone, aor, aor, call_id, 1, tag, base, contact))
    first = phone.collect(job.get("wait", 3), until=lambda m: code(m) >= 200)
    out = {"codes": [code(m) for m in first], "messages": first}
    if final(first) not in (401, 407):
        out["final"] = final(first)
        return out
    ch = challenge([m for m in first if code(m) in (401, 407)][-1])
    creds = credentials(job["auth_user"], job["password"], ch.get("realm", domain), ch.get("nonce", ""),
                        "REGISTER", ruri, ch.get("qop", ""))
    cred_line = f"{job.get('header', 'Authorization')}: {creds}"
    decoys = list(job.get("decoys", []))
    extra = base + (decoys + [cred_line] if job.get("decoy_first") else [cred_line] + decoys)
    phone.send(request("REGISTER", ruri, phone, aor, aor, call_id, 2, tag, extra, contact))
    second = phone.collect(job.get("wait", 3), until=lambda m: code(m) >= 200)
    out["codes"] += [code(m) for m in second]
    out["messages"] += second
    out["final"] = final(second)
    return out


def do_invite(job: dict, phone: Phone) -> dict:
    domain = job["domain"]
    from_uri, ruri = f"sip:{job['from_user']}@{domain}", f"sip:{job['callee']}@{domain}"
    call_id, tag = token() + "@raw", token()
    body = SDP.format(ip=phone.ip)
    contact = f"sip:{job['from_user']}@{phone.local}"
    phone.send(request("INVITE", ruri, phone, from_uri, ruri, call_id, 1, tag, [], contact, body))
    first = phone.collect(job.get("wait", 3), until=lambda m: code(m) >= 200)
    out = {"codes": [code(m) for m in first], "messages": list(first)}
    if final(first):
        phone.send(ack_for(first[-1], ruri, phone))
    if final(first) != 407:
        out["final"] = final(first)
        return out
    ch = challenge([m for m in first if code(m) == 407][-1])
    creds = credentials(job["auth_user"], job["password"], ch.get("realm", domain), ch.get("nonce", ""),
                        "INVITE", ruri, ch.get("qop", ""))
    cred_line = f"{job.get('header', 'Proxy-Authorization')}: {creds}"
    decoys = list(job.get("decoys", []))
    extra = decoys + [cred_line] if job.get("decoy_first") else [cred_line] + decoys
    invite = request("INVITE", ruri, phone, from_uri, ruri, call_id, 2, tag, extra, contact, body)
    phone.send(invite)
    second = phone.collect(job.get("wait", 3), until=lambda m: code(m) >= 180)
    out["codes"] += [code(m) for m in second]
    out["messages"] += second
    out["final"] = final(second)
    if second and not final(second):
        # a call that got through: cancel it (same branch as the INVITE)
        via = re.search(r"^Via: .*$", invite, re.M).group(0)
        phone.send("\r\n".join([f"CANCEL {ruri} SIP/2.0", via, "Max-Forwards: 70", f"From: <{from_uri}>;tag={tag}",
                                f"To: <{ruri}>", f"Call-ID: {call_id}", "CSeq: 2 CANCEL", "Content-Length: 0", "", ""]))
        rest = phone.collect(job.get("wait", 3), until=lambda m: code(m) >= 200 and "INVITE" in header(m, "CSeq"))
        out["messages"] += rest
        for m in rest:
            if code(m) >= 300 and "INVITE" in header(m, "CSeq"):
                phone.send(ack_for(m, ruri, phone))
            elif 200 <= code(m) < 300 and "INVITE" in header(m, "CSeq"):
                hang_up(m, phone, from_uri, tag, call_id)  # answered before the CANCEL: ACK, then BYE
    return out


def hang_up(ok: str, phone: Phone, from_uri: str, tag: str, call_id: str) -> None:
    """ACK a 2xx and end the call with BYE along its route set (the reply's Record-Route, reversed)."""
    routes = [r.strip() for line in re.findall(r"^Record-Route\s*:\s*(.*)$", ok, re.M | re.I)
              for r in line.split(",")][::-1]
    target = re.search(r"<([^>]+)>", header(ok, "Contact") or "<sip:invalid>").group(1)
    to = header(ok, "To")
    for cseq, method in ((2, "ACK"), (3, "BYE")):
        lines = [f"{method} {target} SIP/2.0", f"Via: SIP/2.0/UDP {phone.local};branch=z9hG4bK{token()};rport",
                 "Max-Forwards: 70"] + [f"Route: {r}" for r in routes] + [
                 f"From: <{from_uri}>;tag={tag}", f"To: {to}", f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}", "Content-Length: 0", "", ""]
        phone.send("\r\n".join(lines))
    phone.collect(1.0, until=lambda m: code(m) >= 200 and "BYE" in header(m, "CSeq"))


def ack_for(reply: str, ruri: str, phone: Phone) -> str:
    """ACK of a non-2xx final reply (same Via branch, To with the reply's tag)."""
    lines = [f"ACK {ruri} SIP/2.0", f"Via: {header(reply, 'Via')}", "Max-Forwards: 70",
             f"From: {header(reply, 'From')}", f"To: {header(reply, 'To')}", f"Call-ID: {header(reply, 'Call-ID')}",
             f"CSeq: {header(reply, 'CSeq').split()[0]} ACK", "Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def do_send(job: dict, phone: Phone) -> dict:
    replies, branch = [], "z9hG4bK" + token()  # one branch per job: a CANCEL matches its INVITE
    for n, text in enumerate(job["messages"]):
        phone.send(text.format(local=phone.local, ip=phone.ip, port=phone.port, branch=branch, n=n))
        if job.get("pace"):
            replies += phone.collect(job["pace"])
    replies += phone.collect(job.get("wait", 2))
    return {"codes": [code(m) for m in replies], "messages": replies}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def datagram(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 header and a UDP header (with its checksum) around ``payload``."""
    saddr, daddr = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", src[1], dst[1], length, 0)
    pseudo = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    udp = struct.pack("!HHHH", src[1], dst[1], length, checksum(pseudo + udp + payload) or 0xFFFF)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, secrets.randbelow(65536), 0, 64,
                         socket.IPPROTO_UDP, 0, saddr, daddr)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp + payload


def do_spoof(job: dict) -> dict:
    src = (job["source"]["ip"], int(job["source"]["port"]))
    dst = (job["proxy"], int(job.get("port", 5060)))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    branch = "z9hG4bK" + token()
    for n, text in enumerate(job["messages"]):
        payload = text.format(local=f"{src[0]}:{src[1]}", ip=src[0], port=src[1], branch=branch, n=n)
        raw.sendto(datagram(src, dst, payload.replace("\r\n", "\n").replace("\n", "\r\n").encode()), dst)
        time.sleep(job.get("pace", 0.05))
    raw.close()
    return {"sent": len(job["messages"]), "codes": [], "messages": []}


def main() -> int:
    job = json.loads(sys.argv[1])
    if job["action"] == "spoof":
        print(json.dumps(do_spoof(job)))
        return 0
    phone = Phone(job["proxy"], job.get("port", 5060), job.get("local_port", 0), job.get("listen_port", 0))
    result = {"register": do_register, "invite": do_invite, "send": do_send}[job["action"]](job, phone)
    if phone.listener:
        phone.collect(job.get("listen_wait", 1.0))  # a relayed copy may come late (retransmissions)
    result["foreign"] = phone.foreign
    result["local"] = phone.local
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
