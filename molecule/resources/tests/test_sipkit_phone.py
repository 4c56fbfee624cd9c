"""The TLS/WSS phone's digest answer, checked against RFC 2617's worked example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PHONE = Path(__file__).resolve().parents[3] / "roles" / "sipp" / "files" / "sipkit-phone.py"
spec = importlib.util.spec_from_file_location("sipkit_phone", PHONE)
phone = importlib.util.module_from_spec(spec)
spec.loader.exec_module(phone)

CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
             'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_digest_with_qop_matches_rfc_2617(monkeypatch):
    monkeypatch.setattr(phone.secrets, "token_hex", lambda n: "0a4f113b")
    header = phone.digest_header(CHALLENGE, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "Authorization")
    assert header.startswith("Authorization: Digest ")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    assert "qop=auth" in header and "nc=00000001" in header


def test_digest_without_qop_is_md5_of_ha1_nonce_ha2():
    import hashlib

    header = phone.digest_header('Digest realm="r", nonce="n"', "REGISTER", "sip:d", "u", "p", "Proxy-Authorization")
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:d").hexdigest()
    assert f'response="{hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()}"' in header
    assert "qop" not in header


def test_stream_split_keeps_every_message():
    two = "SIP/2.0 100 Trying\r\nCSeq: 1 REGISTER\r\n\r\nSIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\n\r\n"
    assert [m.split("\r\n")[0] for m in phone.split_stream(two)] == ["SIP/2.0 100 Trying", "SIP/2.0 401 Unauthorized"]
