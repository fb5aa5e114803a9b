"""Issue 11: hostile registrants, readers and clients (the log's side).

Regression tests, each failing on the code before its fix: public URLs from the configured
base URL (item 8), rate limiting on by default (item 9), one claim one entry (item 1) and
byte-bounded paging of lookups."""

from __future__ import annotations

import cbor2

from .test_server import app, client, ed_issuer, issuer_key, make_app, pki, post, svc_of  # noqa: F401 - fixtures
from .test_server_support import statement


# ---- item 8: public URLs from the configured base URL, never from the Host header ------------
def test_configuration_urls_ignore_host_header(make_app, issuer_key):
    app = make_app(public_url="https://pub.example/log/")
    c = app.test_client()
    conf = cbor2.loads(c.get("/.well-known/transparency-configuration",
                             headers={"Host": "evil.example"}).data)
    for k in ("jwks_uri", "scitt_keys_uri", "registration_endpoint", "checkpoint_uri"):
        assert conf[k].startswith("https://pub.example/log/"), conf[k]
    r = post(c, statement(issuer_key, sub="host/1"), headers={"Host": "evil.example"})
    assert r.status_code == 201
    assert r.headers["Location"].startswith("/log/entries/")
    assert "evil" not in r.headers["Location"]


def test_configuration_default_base_is_the_issuer(client):
    conf = cbor2.loads(client.get("/.well-known/transparency-configuration",
                                  headers={"Host": "evil.example:666"}).data)
    assert conf["registration_endpoint"] == "https://test.example/entries"


# ---- item 1: one claim, one entry ----------------------------------------------------------
def _reencode_protected_head(stmt: bytes) -> bytes:
    """The same COSE_Sign1 with the protected bstr's length in a longer (non-shortest) head."""
    from verifier import cose

    m = cose.decode_sign1(stmt)
    p = m.protected_raw
    head = b"\x59" + len(p).to_bytes(2, "big")  # 2-byte length although it fits in one
    assert stmt[2:2 + 2] == b"\x58" + bytes([len(p)])
    return stmt[:2] + head + stmt[4:]


def _twin(stmt: bytes) -> bytes:
    """The ECDSA (r, n-s) twin: another valid signature of the same content."""
    from verifier import cose

    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    m = cose.decode_sign1(stmt)
    r, s_ = int.from_bytes(m.signature[:32], "big"), int.from_bytes(m.signature[32:], "big")
    return cose.encode_sign1(m.protected_raw, {}, m.payload, r.to_bytes(32, "big") + (n - s_).to_bytes(32, "big"))


def _resign(key, stmt: bytes) -> bytes:
    from verifier import cose

    m = cose.decode_sign1(stmt)
    return cose.encode_sign1(m.protected_raw, {}, m.payload, cose.sign_tbs(key, -7, m.tbs()))


def test_non_shortest_outer_encoding_refused(client, issuer_key):
    st = statement(issuer_key, sub="enc/1")
    bad = _reencode_protected_head(st)
    from verifier.statement import SignedStatement

    SignedStatement.parse(bad).verify(issuer_key.public_key())  # the signature still verifies
    before = svc_of(client.application).tree_size()
    r = post(client, bad)
    assert r.status_code == 400 and b"shortest" in r.data
    assert svc_of(client.application).tree_size() == before


def test_twin_and_resignature_return_the_original_entry(client, issuer_key):
    from verifier import receipt as vreceipt
    from verifier.statement import SignedStatement

    svc = svc_of(client.application)
    st = statement(issuer_key, sub="claim/1")
    r1 = post(client, st)
    assert r1.status_code == 201
    size = svc.tree_size()
    leaf = SignedStatement.parse(st).leaf_input
    for other in (_twin(st), _resign(issuer_key, st), _resign(issuer_key, _twin(st))):
        assert SignedStatement.parse(other).leaf_input != leaf
        r = post(client, other)
        assert r.status_code == 201, r.data
        assert r.headers["Location"] == r1.headers["Location"]  # the original entry
        # the receipt proves the ORIGINAL statement, not the re-signed bytes
        vreceipt.verify_inclusion_receipt(r.data, leaf, svc.keys.public_keys())
    assert svc.tree_size() == size


def test_same_claim_in_one_batch_is_one_entry(make_app, issuer_key):
    app = make_app()
    svc = svc_of(app)
    st = statement(issuer_key, sub="batch/1")
    from verifier.statement import SignedStatement

    versions = [st, _twin(st), _resign(issuer_key, st)]
    parsed = [SignedStatement.parse(v) for v in versions]
    entries = svc.log.append([(p.leaf_input, p.statement_bytes, (), p.signed_content_digest()) for p in parsed])
    assert [e.index for e in entries] == [entries[0].index] * 3
    assert [e.duplicate for e in entries] == [False, True, True]
    assert svc.log.find_key(parsed[2].signed_content_digest()) == entries[0].index
    assert svc.log.find(parsed[1].leaf_input) is None  # the twin's bytes are not stored


def test_record_id_conflict_409(client, issuer_key):
    from verifier.credential import CPR_MEDIA_TYPE

    svc = svc_of(client.application)

    def cpr(payload, iss="https://issuer.example"):
        return statement(issuer_key, iss=iss, sub="cpr", cty=CPR_MEDIA_TYPE, payload=payload,
                         extra={15: {1: iss, 2: "cpr", 7: b"rid-1"}})

    first = cpr(b"record one")
    r1 = post(client, first)
    assert r1.status_code == 201
    size = svc.tree_size()
    r = post(client, cpr(b"record two"))
    assert r.status_code == 409 and b"rid-1" in r.data
    assert svc.tree_size() == size
    # the same record re-signed is the original entry, not a conflict
    r = post(client, _resign(issuer_key, first))
    assert r.status_code == 201 and r.headers["Location"] == r1.headers["Location"]
    # another issuer's record id is its own
    assert post(client, cpr(b"record two", iss="https://other.example")).status_code == 201
