"""The relying party's choice of the credential's record (verifier/credential/verify.py, issue 16
mutation testing), offline: a credential signed by a test issuer key, its record statements
built here (shapes the issuer never makes), receipts from a one-entry test log.

- Different detached record statements naming the credential's record are different claims
  (they are told apart by their leaf, having no payload to digest): refused as ambiguous.
- A private record (hash envelope) hashed with another algorithm than SHA-256 is refused as
  such, whatever its payload, not compared as if it were a SHA-256 digest."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from issuer.credentials import Pointer, mint_wit, new_record_id, public_jwk
from verifier import VerificationError, cbor, cose, merkle
from verifier import keys as vkeys
from verifier.credential import TrustConfig, verify_credential
from verifier.credential.wire import CPR_MEDIA_TYPE

from .test_receipt_support import LOG_ISSUER, Log, key, leaf_input_of

ISS = "https://issuer.example"
WID = "spiffe://prod.test/payments"


@pytest.fixture(scope="module")
def world():
    ikey = ec.generate_private_key(ec.SECP256R1())
    rid = new_record_id()
    cred = mint_wit(ikey, iss=ISS, sub=WID, cnf_jwk=public_jwk(ed25519.Ed25519PrivateKey.generate().public_key()),
                    pointer=Pointer(rid=rid, log=LOG_ISSUER))
    log_key = key("p256", 43)
    trust = TrustConfig(log_keys={vkeys.thumbprint(log_key): log_key.public_key()},
                        issuer_keys={vkeys.thumbprint(ikey): ikey.public_key()})
    return ikey, rid, cred, log_key, trust


def _prot(ikey, rid, extra: dict):
    return {1: cose.ES256, 4: vkeys.thumbprint(ikey), 15: {1: ISS, 2: rid, 6: 1, 7: rid.encode()}, **extra}


def _transparent(log_key, stmt: bytes) -> bytes:
    """``stmt`` with the receipt of a one-entry log (the test log key)."""
    log = Log(0, priv=log_key)
    log.statements = [stmt]
    log.leaf_inputs = [leaf_input_of(stmt)]
    log.leaf_hashes = [merkle.leaf_hash(d) for d in log.leaf_inputs]
    return log.transparent_statement(0)


def _check(cred, stmts, trust, **kw):
    try:
        verify_credential(cred.raw, stmts, trust, **kw)
    except VerificationError as e:
        return e.check
    return None


def test_different_detached_record_statements_are_ambiguous(world):
    ikey, rid, cred, _, trust = world
    prot = _prot(ikey, rid, {3: CPR_MEDIA_TYPE})
    a = cose.sign1(ikey, prot, b"record a", detached=True)
    b = cose.sign1(ikey, prot, b"record b", detached=True)
    assert _check(cred, [a, b], trust) == "binding.ambiguous"
    # the same statement twice is one claim: it goes on to its receipts (it has none)
    assert _check(cred, [a, a], trust) == "record.signature"


def _envelope(ikey, rid, alg: int, digest: bytes) -> bytes:
    prot = _prot(ikey, rid, {258: alg, 259: CPR_MEDIA_TYPE, 260: f"{ISS}/records/{rid}"})
    return cose.sign1(ikey, prot, digest)


def test_a_private_record_hashed_with_another_algorithm_is_refused(world):
    ikey, rid, cred, log_key, trust = world
    record = cbor.dumps({"not": "a record"})
    # SHA-256 (-16): the envelope is taken, and the record is read (it is no record)
    ts = _transparent(log_key, _envelope(ikey, rid, -16, hashlib.sha256(record).digest()))
    assert _check(cred, [ts], trust, record=record) == "record.type"
    # SHA-384 (-43): refused as such, never compared to the record's SHA-256
    ts = _transparent(log_key, _envelope(ikey, rid, -43, hashlib.sha384(record).digest()))
    assert _check(cred, [ts], trust, record=record) == "record.hash-alg"
    assert _check(cred, [ts], trust) == "record.hash-alg"  # with or without the record
    # a SHA-256 digest labelled as another algorithm is no SHA-256 envelope either
    ts = _transparent(log_key, _envelope(ikey, rid, -44, hashlib.sha256(record).digest()))
    assert _check(cred, [ts], trust, record=record) == "record.hash-alg"
