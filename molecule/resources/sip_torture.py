#!/usr/bin/env python3
"""Malformed SIP for a proxy: messages in the spirit of RFC 4475 (the SIP torture
tests) and a seeded stream of mutations of well-formed requests, sent over UDP.

    python3 sip_torture.py PROXY PORT SEED COUNT    # prints a JSON summary

Run on a client host by the attack tests; standard library only. The same seed
gives the same messages. No message carries credentials (nothing here is a
password guess), and the sender paces itself so that the proxy reads every one.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time

# RFC 4475 section 3.1 style messages: valid but tortuous, and invalid ones.
TORTURE = [
    # wsinv: unusual white space and line folding, escaped characters
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    "TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\n"
    "MaX-fOrWaRdS: 0068\r\nCall-ID: wsinv.ndaksdj@192.0.2.1\r\nContent-Length   : 150\r\n"
    "cseq: 0009\r\n  INVITE\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\ns :\r\n"
    "NewFangledHeader:   newfangled value\r\n continued newfangled value\r\nUnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    "Content-Type: application/sdp\r\nRoute:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\nm:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n"
    "      newvalue ;\r\n  secondparam ; q = 0.33\r\n\r\nv=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\n"
    "c=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n",
    # intmeth: an unknown method made of token characters
    "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\nTo: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n"
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9\";tag=_token~1'+`*%!-.\r\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\nCSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    "Max-Forwards: 255\r\nextensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb\r\nContent-Length: 0\r\n\r\n",
    # escnull: %00 in the user part
    "REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\nFrom: sip:null-%00-null@example.com;tag=839923423\r\n"
    "Max-Forwards: 70\r\nCall-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\nCSeq: 14398234 REGISTER\r\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\nContact: <sip:%00@host5.example.com>\r\nContact: <sip:%00%00@host5.example.com>\r\n"
    "L:0\r\n\r\n",
    # dblreq: two requests in one datagram
    "REGISTER sip:example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:j.user@example.com;tag=43251j3j324\r\n"
    "Max-Forwards: 8\r\nI: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\nContact: sip:j.user@host.example.com\r\nCSeq: 8 REGISTER\r\n"
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\nContent-Length: 0\r\n\r\n"
    "INVITE sip:joe@example.com SIP/2.0\r\nt: sip:joe@example.com\r\nFrom: sip:caller@example.net;tag=141334\r\n"
    "Max-Forwards: 8\r\nCall-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\n"
    "Content-Type: application/sdp\r\nContent-Length: 150\r\n\r\nv=0\r\n",
    # badinv01 / clerr: Content-Length larger than the body, and negative
    "INVITE sip:user@example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=93942939o2\r\n"
    "Max-Forwards: 70\r\nCall-ID: clerr.0ha0isndaksdjweiafasdk3\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n"
    "Content-Type: application/sdp\r\nContent-Length: 9999\r\n\r\nv=0\r\n",
    "INVITE sip:user@example.com SIP/2.0\r\nMax-Forwards: 254\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=32394234\r\n"
    "Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\nCSeq: 0 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n"
    "Content-Type: application/sdp\r\nContent-Length: -999\r\n\r\nv=0\r\n",
    # scalarlg: scalars far out of range
    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\nTo: <sip:user@example.com>\r\n"
    "From: <sip:user@example.com>;tag=239232jh3\r\nCSeq: 36893488147419103232 REGISTER\r\nCall-ID: scalarlg.98asdh@192.0.2.1\r\n"
    "Max-Forwards: 300\r\nExpires: 1000000000000000000000000000000000000000\r\nContact: <sip:user@host129.example.com>;expires=280297596632815\r\n"
    "Content-Length: 0\r\n\r\n",
    # bigcode: a response code that overflows
    "SIP/2.0 4294967301 better not break the receiver\r\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
    "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\r\nCSeq: 353494 INVITE\r\nFrom: <sip:user@example.com>;tag=39ansfi3\r\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\r\nContent-Length: 0\r\nContact: <sip:user@host105.example.com>\r\n\r\n",
    # noreason: a response with no reason phrase, to a proxy that sent no request
    "SIP/2.0 100 \r\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\nCall-ID: noreason.asndj203insdf99223ndf\r\n"
    "CSeq: 35 INVITE\r\nFrom: <sip:user@example.com>;tag=39ansfi3\r\nTo: <sip:user@example.edu>;tag=902jndnke3\r\nContent-Length: 0\r\n\r\n",
    # badvers, unkscm, ltgtruri, lwsruri, lwsstart, trws
    "OPTIONS sip:t.watson@example.org SIP/7.0\r\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\nMax-Forwards: 70\r\n"
    "From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\nTo: T. Watson <sip:t.watson@example.org>\r\nCall-ID: badvers.31417@c.example.com\r\n"
    "CSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
    "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=384\r\n"
    "Max-Forwards: 3\r\nCall-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\nCSeq: 3923423 OPTIONS\r\nVia: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234\r\n"
    "Content-Length: 0\r\n\r\n",
    "INVITE <sip:user@example.com> SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=39291\r\nMax-Forwards: 23\r\n"
    "Call-ID: ltgtruri.1@192.0.2.5\r\nCSeq: 1 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.5\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
    "INVITE sip:user@example.com; lr SIP/2.0\r\nTo: sip:user@example.com;tag=3xfe-9921883-z9f\r\nFrom: sip:caller@example.net;tag=231413434\r\n"
    "Max-Forwards: 5\r\nCall-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\nCSeq: 2130706432 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\r\n"
    "Contact: <sip:caller@host1.example.net>\r\nContent-Length: 0\r\n\r\n",
    "INVITE  sip:user@example.com  SIP/2.0\r\nMax-Forwards: 1\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=8814\r\n"
    "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\r\nCSeq: 1893884 INVITE\r\nVia: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\r\n"
    "Contact: <sip:caller@host1.example.net>\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS sip:remote-target@example.com SIP/2.0  \r\nVia: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093\r\nTo: <sip:remote-target@example.com>\r\n"
    "From: <sip:local-resource@example.com>;tag=329429089\r\nCall-ID: trws.oicu34958239neffasdhr2345r\r\nAccept: application/sdp\r\nCSeq: 238923 OPTIONS\r\n"
    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    # insuf: required headers missing; mismatch01: CSeq method differs
    "INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nContent-Type: application/sdp\r\nl: 5\r\n\r\nv=0\r\n",
    "OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=34525\r\nMax-Forwards: 6\r\n"
    "Call-ID: mismatch01.dj0234sxdfl3\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n",
    # quotbal / baddn / badaspec / regbadct
    "INVITE sip:user@example.com SIP/2.0\r\nTo: \"Mr. J. User <sip:j.user@example.com>\r\nFrom: sip:caller@example.net;tag=93334\r\nMax-Forwards: 10\r\n"
    "Call-ID: quotbal.aksdj\r\nContact: <sip:caller@host59.example.net>\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n"
    "Content-Length: 0\r\n\r\n",
    "OPTIONS sip:t.watson@example.org SIP/2.0\r\nVia: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\r\nMax-Forwards: 70\r\n"
    "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\nTo: Watson, Thomas <sip:t.watson@example.org>\r\nCall-ID: baddn.31415@c.example.com\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    "REGISTER sip:example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:user@example.com;tag=998332\r\nMax-Forwards: 70\r\n"
    "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\r\nCSeq: 1 REGISTER\r\nVia: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\r\n"
    "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\nl: 0\r\n\r\n",
    # zeromf, and a huge header
    "OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=3ghsd41\r\nCall-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\r\n"
    "CSeq: 39234321 OPTIONS\r\nVia: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=long1\r\nCall-ID: longreq.one\r\n"
    "CSeq: 1 OPTIONS\r\nVia: SIP/2.0/UDP host1.example.com;branch=z9hG4bKlong\r\nMax-Forwards: 70\r\nX-Long: " + "x" * 60000 + "\r\nContent-Length: 0\r\n\r\n",
]

BASES = [
    "OPTIONS sip:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}o;rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:fuzz@{proxy}>;tag=f{n}\r\nTo: <sip:{proxy}>\r\nCall-ID: fuzz-{n}@raw\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    "REGISTER sip:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}r;rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:1001@{proxy}>;tag=f{n}\r\nTo: <sip:1001@{proxy}>\r\nCall-ID: fuzz-{n}@raw\r\nCSeq: 1 REGISTER\r\n"
    "Contact: <sip:1001@{local}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:9000@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}i;rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:1002@{proxy}>;tag=f{n}\r\nTo: <sip:9000@{proxy}>\r\nCall-ID: fuzz-{n}@raw\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:1002@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: 68\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    "BYE sip:9000@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}b;rport\r\nMax-Forwards: 70\r\n"
    "Route: <sip:{proxy};lr;did=abc.def>\r\nFrom: <sip:1002@{proxy}>;tag=f{n}\r\nTo: <sip:9000@{proxy}>;tag=t{n}\r\nCall-ID: fuzz-{n}@raw\r\n"
    "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
]

NASTY = [b"\x00", b"\xff", b"\r\n", b"\r", b"\n", b":", b";", b"<", b">", b"\"", b"%", b"%0", b" ", b"\t", b"=", b",",
         b"SIP/2.0", b"\r\n\r\n", b"Content-Length: 999999\r\n", b"Via: SIP/2.0/UDP\r\n", b"\r\n ", b"@", b"[", b"]"]


def mutate(rng: random.Random, message: bytes) -> bytes:
    data = bytearray(message)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        pos = rng.randrange(len(data) + 1) if data else 0
        if kind == 0 and data:                      # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:                             # truncate
            del data[pos:]
        elif kind == 2:                             # insert a nasty token
            data[pos:pos] = rng.choice(NASTY)
        elif kind == 3:                             # duplicate a header line
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i = rng.randrange(1, len(lines) - 1)
                lines[i:i] = [lines[i]] * rng.randint(1, 30)
                data = bytearray(b"\r\n".join(lines))
        elif kind == 4:                             # drop a header line
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                del lines[rng.randrange(1, len(lines) - 1)]
                data = bytearray(b"\r\n".join(lines))
        elif kind == 5:                             # random garbage run
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        elif kind == 6 and data:                    # line endings stripped to bare LF
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
    return bytes(data[:65000])


def main() -> int:
    proxy, port, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((proxy, port))
    sock.setblocking(False)
    ip, lport = sock.getsockname()
    local = f"{ip}:{lport}"
    messages = [m.encode("latin-1", errors="replace") if isinstance(m, str) else m for m in TORTURE]
    for n in range(count):
        base = rng.choice(BASES).format(proxy=proxy, local=local, ip=ip, n=n).encode()
        messages.append(mutate(rng, base))
    replies = sent = 0
    for n, data in enumerate(messages):
        try:
            sock.send(data)
            sent += 1
        except OSError:
            pass  # e.g. an ICMP error from an earlier message surfacing on this socket
        if n % 20 == 19:
            time.sleep(0.02)  # about 1000 messages/s: the proxy reads them all
        while True:
            try:
                sock.recv(65535)
                replies += 1
            except (BlockingIOError, OSError):
                break
    time.sleep(1)
    while True:
        try:
            sock.recv(65535)
            replies += 1
        except (BlockingIOError, OSError):
            break
    print(json.dumps({"sent": sent, "torture": len(TORTURE), "mutated": count, "replies": replies}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
