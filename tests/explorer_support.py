"""Fixture (no tests here): a real log on loopback with plain statements, public CPR records (WIT
and X.509 SVID) and a private (hash-envelope) record, for the explorer tests."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from issuer.provenance import build_status, encode_cpr, sign_cpr, sign_status
from verifier import keys as vkeys
from verifier.credential import CPR_TYPE
from verifier.statement import SignedStatement

from .real_log_fixture import LogServer, issuer_key_file

ISS = "https://issuer.explorer.test"


class _Identity:
    def __init__(self, key):
        self.key, self.id, self.kid = key, ISS, vkeys.thumbprint(key.public_key())


@dataclass
class World:
    server: LogServer
    ids: dict = field(default_factory=dict)  # name -> entry id (hex)
    wit_sha256: str = ""
    x509_der: bytes = b""  # an X.509 SVID whose provenance record is entry "x509"
    wit: str = ""  # a WIT (compact JWS) whose provenance record is entry "wit"


def cpr(identity, rid: str, cred: dict, *, private: bool = False) -> bytes:
    rec = {"type": CPR_TYPE, "rid": rid, "iat": int(time.time()), "credential": cred,
           "issuer": {"id": ISS}}
    return sign_cpr(identity, encode_cpr(rec), rid=rid, sub=cred.get("sub", "spiffe://explorer.test/w"),
                    iat=int(time.time()), private_location="https://vault.explorer.test/r" if private else None)


def make_wit(key, jti: str = "jti-1") -> str:
    import jwt

    wk = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    b64 = lambda n: jwt.utils.base64url_encode(n.to_bytes(32, "big")).decode()  # noqa: E731
    claims = {"iss": "https://wit.explorer.test", "sub": "spiffe://explorer.test/payments", "jti": jti,
              "exp": int(time.time()) + 3600,
              "cnf": {"jwk": {"kty": "EC", "crv": "P-256", "x": b64(wk.x), "y": b64(wk.y), "alg": "ES256"}}}
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "wit+jwt"})


def make_svid(key) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Explorer CA")])  # RFC 4514: CN=Explorer CA,O=Test
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(0xA1B2)
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://explorer.test/db")]),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def build(tmp_path: Path, plain: int = 5) -> World:
    key = ec.generate_private_key(ec.SECP256R1())
    srv = LogServer(tmp_path / "log", issuer_keys=[issuer_key_file(tmp_path, key, "issuer", ISS)],
                    origin="explorer.test/log")
    w = World(srv)
    ident = _Identity(key)

    def post(name: str, data: bytes) -> None:
        r = srv.client.post("/entries", data=data, content_type="application/cose")
        assert r.status_code == 201, r.data
        w.ids[name] = SignedStatement.parse(data).leaf_input.hex()

    from .test_server_support import statement

    for i in range(plain):
        post(f"plain{i}", statement(key, iss=ISS, sub=f"workload/{i}", payload=b'{"build": %d}' % i))
    w.wit = make_wit(key)
    w.wit_sha256 = hashlib.sha256(w.wit.encode("ascii")).hexdigest()
    post("wit", cpr(ident, "rid-wit-1", {"format": "wit", "iss": "https://wit.explorer.test", "jti": "jti-1",
                                         "sub": "spiffe://explorer.test/payments",
                                         "digest": {"sha256": w.wit_sha256}}))
    w.x509_der = make_svid(key)
    post("x509", cpr(ident, "rid-x509-1", {"format": "x509", "issuer_dn": "CN=Explorer CA,O=Test",
                                           "serial": "a1b2", "sub": "spiffe://explorer.test/db",
                                           "digest": {"sha256": hashlib.sha256(w.x509_der).hexdigest()}}))
    post("private", cpr(ident, "rid-private-1", {"format": "wit", "iss": "https://wit.explorer.test",
                                                 "jti": "jti-private"}, private=True))
    post("revocation", sign_status(ident, build_status(rid="rid-x509-1", record_sha256=w.ids["x509"],
                                                      reason="key compromise")))
    return w
