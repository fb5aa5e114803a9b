"""Fixture (no tests here): a real log on loopback with plain statements, public CPR records (WIT
and X.509 SVID) and a private (hash-envelope) record, for the explorer tests."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from issuer.provenance import encode_cpr, sign_cpr
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


def cpr(identity, rid: str, cred: dict, *, private: bool = False) -> bytes:
    rec = {"type": CPR_TYPE, "rid": rid, "iat": int(time.time()), "credential": cred,
           "issuer": {"id": ISS}}
    return sign_cpr(identity, encode_cpr(rec), rid=rid, sub=cred.get("sub", "spiffe://explorer.test/w"),
                    iat=int(time.time()), private_location="https://vault.explorer.test/r" if private else None)


def build(tmp_path: Path, plain: int = 5) -> World:
    key = ec.generate_private_key(ec.SECP256R1())
    srv = LogServer(tmp_path / "log", issuer_keys=[issuer_key_file(tmp_path, key, "issuer")],
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
    w.wit_sha256 = hashlib.sha256(b"a WIT's bytes").hexdigest()
    post("wit", cpr(ident, "rid-wit-1", {"format": "wit", "iss": "https://wit.explorer.test", "jti": "jti-1",
                                         "sub": "spiffe://explorer.test/payments",
                                         "digest": {"sha256": w.wit_sha256}}))
    post("x509", cpr(ident, "rid-x509-1", {"format": "x509", "issuer_dn": "CN=Explorer CA,O=Test",
                                           "serial": "a1b2", "sub": "spiffe://explorer.test/db",
                                           "digest": {"sha256": hashlib.sha256(b"a cert").hexdigest()}}))
    post("private", cpr(ident, "rid-private-1", {"format": "wit", "iss": "https://wit.explorer.test",
                                                 "jti": "jti-private"}, private=True))
    return w
