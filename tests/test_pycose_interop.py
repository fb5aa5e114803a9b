"""Interop with pycose (a second COSE implementation, named in the original design; issue 11):
pycose signs Signed Statements the log admits (and the log refuses pycose statements that break
the policy), and pycose reads and verifies the log's receipts.

pycose 1.1.0 with cbor2 >= 6: ``CoseMessage.decode`` refuses every message because cbor2 now
returns arrays as tuples (and maps in arrays as frozendicts); :func:`_pycose_decode` does what
``decode`` does, with lists and dicts.
"""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message

from tlog.config import Config
from tlog.server import create_app
from verifier import cbor, merkle
from verifier.receipt import verify_inclusion_receipt
from verifier.statement import SignedStatement

from .test_server_support import kid_of, write_public

ISS = "https://pycose.example"
KEY = ec.generate_private_key(ec.SECP256R1())


def _cose_key(priv=None, pub=None) -> EC2Key:
    pub = pub or priv.public_key()
    nums = pub.public_numbers()
    kw = dict(crv=P256, x=nums.x.to_bytes(32, "big"), y=nums.y.to_bytes(32, "big"))
    if priv is not None:
        kw["d"] = priv.private_numbers().private_value.to_bytes(32, "big")
    return EC2Key(**kw)


def _pycose_sign(phdr: dict, payload: bytes, uhdr: dict | None = None) -> bytes:
    msg = Sign1Message(phdr=phdr, uhdr=uhdr or {}, payload=payload)
    msg.key = _cose_key(KEY)
    return msg.encode(tag=True)


def _pycose_decode(data: bytes) -> Sign1Message:
    tagged = cbor2.loads(data)
    assert tagged.tag == 18
    # cbor2 6 gives tuples and frozendicts where pycose 1.1.0 checks for list and dict
    return Sign1Message.from_cose_obj(cbor.normalize(tagged.value), True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    d = tmp_path_factory.mktemp("pycose")
    app = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(d / "data"), origin="pycose.example/log", issuer="https://log.pycose.example",
        issuer_keys=[{"path": str(write_public(d / "k.pem", KEY)), "iss": [ISS]}],
        max_statement_size=8192, max_body=16384, register_wait=5.0)))
    yield app
    app.extensions["tlog.service"].close()


def _post(app, body: bytes):
    return app.test_client().post("/entries", data=body, content_type="application/cose")


def test_pycose_statement_admitted_and_receipt_read_by_pycose(app):
    body = _pycose_sign({Algorithm: Es256, KID: kid_of(KEY), ContentType: "application/json",
                         15: {1: ISS, 2: "pycose/1"}}, b'{"built": "by pycose"}')
    r = _post(app, body)
    assert r.status_code == 201, r.data[:300]
    svc = app.extensions["tlog.service"]
    st = SignedStatement.parse(body)
    info = verify_inclusion_receipt(r.data, st.leaf_input, svc.keys.public_keys())
    # pycose reads our receipt and verifies its signature over the root the proof implies
    rec = _pycose_decode(r.data)
    assert rec.phdr[Algorithm] is Es256 or rec.phdr[Algorithm] == Es256
    assert rec.payload is None  # detached: the payload is the root
    proof = cbor2.loads(rec.uhdr[396][-1][0])
    size, index, path = proof[0], proof[1], list(proof[2])
    assert (size, index) == (info.size, info.index)
    root = merkle.root_from_inclusion_proof(index, size, merkle.leaf_hash(st.leaf_input), path)
    rec.key = _cose_key(pub=svc.keys.receipt.private.public_key())
    assert rec.verify_signature(detached_payload=root)
    assert not rec.verify_signature(detached_payload=bytes(32))


def test_pycose_statements_the_policy_refuses(app):
    # another iss than the key is bound to
    r = _post(app, _pycose_sign({Algorithm: Es256, KID: kid_of(KEY), 15: {1: "https://victim.example", 2: "s"}}, b"{}"))
    assert r.status_code == 400
    # an unknown critical header parameter
    r = _post(app, _pycose_sign({Algorithm: Es256, KID: kid_of(KEY), 15: {1: ISS, 2: "s"}, 2: [999], 999: 1}, b"{}"))
    assert r.status_code == 400
    # kid only in the unprotected header: no identity in the protected header
    r = _post(app, _pycose_sign({Algorithm: Es256, 15: {1: ISS, 2: "s"}}, b"{}", uhdr={KID: kid_of(KEY)}))
    assert r.status_code == 400
    # the same statement with everything protected is admitted
    r = _post(app, _pycose_sign({Algorithm: Es256, KID: kid_of(KEY), 15: {1: ISS, 2: "s"}}, b"{}"))
    assert r.status_code == 201


def test_pycose_reads_statements_we_sign():
    from verifier import cose

    data = cose.sign1(KEY, {1: -7, 4: kid_of(KEY), 15: {1: ISS, 2: "ours"}}, b"ours")
    msg = _pycose_decode(data)
    msg.key = _cose_key(pub=KEY.public_key())
    assert msg.verify_signature() and msg.payload == b"ours"
