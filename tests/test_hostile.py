"""Issue 11: hostile registrants, readers and clients (the log's side).

Regression tests, each failing on the code before its fix: public URLs from the configured
base URL (item 8), rate limiting on by default (item 9), one claim one entry (item 1) and
byte-bounded paging of lookups."""

from __future__ import annotations

import cbor2

from .test_server import app, client, ed_issuer, issuer_key, make_app, pki, post, svc_of  # noqa: F401 - fixtures
from .test_server_support import ISS, bound, statement, write_public


def _app_for(make_app, tmp_path, issuer_key, *iss, **kw):
    """An app whose issuer key may claim each of ``iss`` (the identities a test registers under)."""
    return make_app(issuer_keys=[bound(write_public(tmp_path / "multi.pem", issuer_key), *iss)], **kw)


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


def test_record_id_conflict_409(make_app, tmp_path, issuer_key):
    from verifier.credential import CPR_MEDIA_TYPE

    client = _app_for(make_app, tmp_path, issuer_key, ISS, "https://other.example").test_client()
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


# ---- item 9: denial-of-service limits on by default ------------------------------------------
def test_refused_registrations_limited_by_default(make_app, issuer_key):
    app = make_app()
    bad = app.test_client()
    bad.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    codes = [post(bad, b"\xd2\x84garbage").status_code for _ in range(80)]
    assert set(codes[:50]) == {400} and codes[-1] == 429, codes
    r = post(bad, statement(issuer_key, sub="dos/0"))
    assert r.status_code == 429 and r.headers["Retry-After"]
    # multipart registrations (the Flask path) are gated the same way
    r = bad.post("/entries", data={"statement": (__import__("io").BytesIO(b"x"), "s")},
                 content_type="multipart/form-data")
    assert r.status_code == 429
    # another client is not affected
    good = app.test_client()
    good.environ_base["REMOTE_ADDR"] = "10.0.0.2"
    assert post(good, statement(issuer_key, sub="dos/1")).status_code == 201


def test_valid_registrations_never_throttled(make_app, issuer_key):
    app = make_app()
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.0.0.3"
    sts = [statement(issuer_key, sub=f"flood/{i}") for i in range(300)]
    codes = [post(c, st).status_code for st in sts]
    assert set(codes) == {201}


def test_lookups_limited_by_default(make_app):
    from tlog.config import Config

    assert Config().lookup_rate > 0 and Config().refusal_rate > 0  # on by default
    app = make_app(lookup_rate=1, lookup_burst=20)
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.0.0.4"
    codes = [c.get("/entries?iss=https://nobody.example").status_code for _ in range(30)]
    assert codes[0] == 200 and codes[-1] == 429, codes
    assert c.get("/twi/v1/cpr?rid=x").status_code == 429
    # reads by id, tiles and checkpoints are not lookups
    assert c.get("/checkpoint").status_code == 200


def test_limits_can_be_turned_off(make_app):
    app = make_app(refusal_rate=0, lookup_rate=0)
    c = app.test_client()
    assert {post(c, b"\xd2\x84garbage").status_code for _ in range(80)} == {400}


# ---- lookups paged by bytes ------------------------------------------------------------------
def test_cpr_lookup_paged_by_bytes(make_app, tmp_path, issuer_key):
    from tlog.twi.routes import install
    from verifier import cbor as vcbor
    from verifier.credential import CPR_MEDIA_TYPE
    from verifier.http import next_link

    app = _app_for(make_app, tmp_path, issuer_key, *(f"https://issuer{i}.example" for i in range(3)),
                   page_bytes=1)  # every page holds one whole statement
    install(app)
    c = app.test_client()
    for i in range(3):
        iss = f"https://issuer{i}.example"
        r = post(c, statement(issuer_key, iss=iss, sub="cpr", cty=CPR_MEDIA_TYPE, payload=b"record %d" % i,
                              extra={15: {1: iss, 2: "cpr", 7: b"rid-paged"}}))
        assert r.status_code == 201
    url, got = "/twi/v1/cpr?rid=rid-paged", []
    while url:
        r = c.get(url)
        assert r.status_code == 200
        page = vcbor.loads(r.data)
        assert len(page) == 1
        got += page
        nxt = next_link(r.headers.get("Link"), "http://log.test" + url)
        url = nxt[len("http://log.test"):] if nxt else None
    assert len(got) == 3 and len(set(got)) == 3
    assert c.get("/twi/v1/cpr?rid=rid-paged&from=x").status_code == 400
