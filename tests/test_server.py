"""The SCRAPI HTTP front through Flask's test client: registration, bad input, reads, proofs."""

from __future__ import annotations

import base64
import hashlib
import os
import threading

import cbor2
import pytest

from verifier import VerificationError, cose
from verifier import cbor as vcbor
from verifier import keys as vkeys
from verifier import merkle
from verifier import note as vnote
from verifier import receipt as vreceipt
from verifier import transparent as vtransparent
from verifier.statement import SignedStatement

from tlog.config import DEFAULT_ALGS, Config
from tlog.server import create_app
from tlog.server.problems import MEDIA_TYPE as PROBLEM

from .test_server_support import (
    bound,
    der,
    ed25519_key,
    kid_of,
    make_ca,
    make_leaf,
    pem,
    statement,
    write_public,
)
from cryptography.hazmat.primitives.asymmetric import ec


@pytest.fixture(scope="module")
def issuer_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_issuer():
    return ed25519_key()


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca()
    leaf_key, leaf = make_leaf(ca_key, ca)
    return ca, leaf_key, leaf


@pytest.fixture
def make_app(tmp_path, issuer_key, ed_issuer, pki):
    apps = []

    def make(**overrides):
        ca, _, _ = pki
        (tmp_path / "anchors.pem").write_bytes(pem(ca))
        settings = dict(
            data_dir=str(tmp_path / "data"),
            issuer_keys=[bound(write_public(tmp_path / "iss.pem", issuer_key)), bound(write_public(tmp_path / "ed.pem", ed_issuer))],
            trust_anchors=[str(tmp_path / "anchors.pem")],
            max_statement_size=8192,
            max_body=16384,
            register_wait=5.0,
            origin="test.example/log",
            issuer="https://test.example",
        )
        settings.update(overrides)
        app = create_app(Config.load(env={}, overrides=settings))
        apps.append(app)
        return app

    yield make
    for a in apps:
        a.extensions["tlog.service"].close()


def change_policy(app, **settings):
    """``tlog policy set``'s step: the settings given replace those fields of the policy in force."""
    from tlog.logstate import configured_policy

    svc = svc_of(app)
    svc.set_policy(configured_policy(Config().update(settings), base=svc.policy))


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def svc_of(app):
    return app.extensions["tlog.service"]


def problem_of(resp) -> dict:
    assert resp.mimetype == PROBLEM, (resp.status_code, resp.data[:200])
    body = cbor2.loads(resp.data)
    assert isinstance(body, dict) and isinstance(body.get(-1), str) and body[-1]
    return body


def post(client, body, ctype="application/cose", **kw):
    return client.post("/entries", data=body, content_type=ctype, **kw)


def log_keys(app) -> dict:
    return svc_of(app).keys.public_keys()


# ---------------------------------------------------------------- registration

def test_register_returns_verifiable_receipt(app, client, issuer_key):
    st = statement(issuer_key)
    r = post(client, st)
    assert r.status_code == 201, r.data
    assert r.mimetype == "application/cose"
    leaf = SignedStatement.parse(st).leaf_input
    assert r.headers["Location"] == f"/entries/{leaf.hex()}"
    info = vreceipt.verify_inclusion_receipt(r.data, leaf, log_keys(app))
    assert info.issuer == "https://test.example" and info.subject == "test.example/log"
    # the entry resolves by id and by index, to the same receipt bytes
    r2 = client.get(r.headers["Location"])
    assert r2.status_code == 200 and r2.data == r.data
    r3 = client.get(f"/entries/{info.index}")
    assert r3.status_code == 200 and r3.data == r.data
    # duplicate submission: same entry, same receipt
    r4 = post(client, st)
    assert r4.status_code == 201 and r4.data == r.data
    m = client.get("/metrics").data.decode()
    assert 'outcome="integrated"} 1.0\n' in m and 'outcome="duplicate"} 1.0\n' in m
    assert f"tlog_tree_size {svc_of(app).tree_size()}\n" in m


def test_ed25519_and_x5chain_issuers(app, client, ed_issuer, pki):
    _, leaf_key, leaf_cert = pki
    st1 = statement(ed_issuer)
    r1 = post(client, st1)
    assert r1.status_code == 201, problem_of(r1)
    st2 = statement(leaf_key, iss="https://issuer.example", kid=False, extra={33: [der(leaf_cert)]})
    r2 = post(client, st2)
    assert r2.status_code == 201, problem_of(r2)
    vreceipt.verify_inclusion_receipt(r2.data, SignedStatement.parse(st2).leaf_input, log_keys(app))
    # an x5chain to an unknown root is rejected
    other_ca_key, other_ca = make_ca("Other Root")
    k3, c3 = make_leaf(other_ca_key, other_ca)
    r3 = post(client, statement(k3, iss="https://issuer.example", kid=False, extra={33: [der(c3)]}))
    assert r3.status_code == 400 and problem_of(r3)[-1] == "Rejected"


def test_one_signature_per_tree_size(app, issuer_key):
    """Entries integrated in one batch share the receipt signature of that tree size."""
    client = app.test_client()
    sts = [statement(issuer_key, sub=f"batch/{i}") for i in range(12)]
    out = [None] * len(sts)

    def go(i):
        out[i] = app.test_client().post("/entries", data=sts[i], content_type="application/cose")

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(sts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    by_size: dict[int, set] = {}
    for st, r in zip(sts, out):
        assert r.status_code == 201
        info = vreceipt.verify_inclusion_receipt(r.data, SignedStatement.parse(st).leaf_input, log_keys(app))
        sig = cose.decode_sign1(r.data).signature
        by_size.setdefault(info.size, set()).add(sig)
    assert all(len(sigs) == 1 for sigs in by_size.values())
    # and GET for a later size reuses the stored head signature too
    size = svc_of(app).tree_size()
    sigs = {cose.decode_sign1(client.get(f"/entries/{i}/receipt?size={size}").data).signature for i in range(1, size)}
    assert len(sigs) == 1


# ---------------------------------------------------------------- bad input matrix

def _bad_inputs(issuer_key, other_key):
    good = statement(issuer_key)
    msg = cose.decode_sign1(good)
    prot, payload, sig = msg.protected_raw, msg.payload, msg.signature

    def enc(p=prot, u=None, pl=payload, s=sig):
        return cose.encode_sign1(p, u or {}, pl, s)

    def signed(protected, pl=b"x"):
        return cose.encode_sign1(
            protected, {}, pl, cose.sign_tbs(issuer_key, -7, cose.sig_structure(vcbor.dumps(protected), pl))
        )

    kid = kid_of(issuer_key)
    nested = b"\x81" * 5000 + b"\x00"
    tampered_payload = enc(pl=payload[:-1] + bytes([payload[-1] ^ 1]))
    tampered_sig = enc(s=sig[:-1] + bytes([sig[-1] ^ 1]))
    not_map = cose.sign_tbs(issuer_key, -7, cose.sig_structure(vcbor.dumps([1, -7]), b"x"))
    unknown_alg_prot = vcbor.dumps({1: -65000, 4: kid, 15: {1: "i", 2: "s"}})
    return {
        "empty body": (b"", 400, "Malformed request"),
        "random bytes": (os.urandom(200), 400, "Malformed request"),
        "cbor without tag 18": (cbor2.dumps([prot, {}, payload, sig]), 400, "Malformed request"),
        "wrong arity": (b"\xd2" + cbor2.dumps([prot, {}, payload]), 400, "Malformed request"),
        "wrong arity 5": (b"\xd2" + cbor2.dumps([prot, {}, payload, sig, b""]), 400, "Malformed request"),
        "untrusted issuer": (statement(other_key), 400, "Rejected"),
        "tampered payload": (tampered_payload, 400, "Rejected"),
        "tampered signature": (tampered_sig, 400, "Rejected"),
        "no cwt claims": (signed({1: -7, 4: kid}), 400, "Malformed request"),
        "no iss": (signed({1: -7, 4: kid, 15: {2: "s"}}), 400, "Malformed request"),
        "no sub": (signed({1: -7, 4: kid, 15: {1: "i"}}), 400, "Malformed request"),
        "iss not text": (signed({1: -7, 4: kid, 15: {1: 7, 2: "s"}}), 400, "Malformed request"),
        "no kid and no x5chain": (signed({1: -7, 15: {1: "i", 2: "s"}}), 400, "Malformed request"),
        "kid not bstr": (signed({1: -7, 4: "k", 15: {1: "i", 2: "s"}}), 400, "Malformed request"),
        "unknown alg": (cose.encode_sign1(unknown_alg_prot, {}, b"x", b"\x00" * 64), 400, "Bad Signature Algorithm"),
        "no alg": (signed({4: kid, 15: {1: "i", 2: "s"}}), 400, "Bad Signature Algorithm"),
        "protected header not a map": (cose.encode_sign1(vcbor.dumps([1, -7]), {}, b"x", not_map), 400, "Malformed request"),
        "protected not bstr": (b"\xd2\x84\xa0\xa0\x41x\x40", 400, "Malformed request"),
        "deeply nested cbor": (b"\xd2\x84" + vcbor.encode_bstr(prot) + b"\xa1\x01" + nested + vcbor.encode_bstr(payload) + vcbor.encode_bstr(sig), 400, "Malformed request"),
        "truncated": (good[:-10], 400, "Malformed request"),
        "trailing bytes": (good + b"\x00", 400, "Malformed request"),
        "indefinite length": (b"\xd2\x9f" + good[2:] + b"\xff", 400, "Malformed request"),
        "detached payload not supplied": (statement(issuer_key, detached=True), 400, "Payload Missing"),
        "oversized": (b"\xd2" + b"\x00" * 20000, 413, "Payload Too Large"),
    }


def test_bad_input_matrix(app, client, issuer_key):
    other = ec.generate_private_key(ec.SECP256R1())
    svc = svc_of(app)
    size0 = svc.tree_size()
    cp0 = client.get("/checkpoint").data
    for name, (body, status, title) in _bad_inputs(issuer_key, other).items():
        r = post(client, body)
        assert r.status_code == status, (name, r.status_code, r.data[:200])
        pd = problem_of(r)
        assert pd[-1] == title, (name, pd)
        assert pd.get(-2), name
        assert svc.tree_size() == size0, name
    assert client.get("/checkpoint").data == cp0
    # metrics counted the rejections by reason
    m = client.get("/metrics").data.decode()
    assert 'reason="signature"' in m and 'reason="untrusted-issuer"' in m and 'reason="too-large"' in m


def test_policy_limits(make_app, issuer_key):
    app = make_app(allowed_algs=[-8], allowed_content_types=["application/spdx+json"], max_statement_size=400)
    client = app.test_client()
    size0 = svc_of(app).tree_size()
    r = post(client, statement(issuer_key))
    assert r.status_code == 400 and problem_of(r)[-1] == "Bad Signature Algorithm"
    r = post(client, statement(ed25519_key(), kid=b"\x01" * 32))
    assert r.status_code == 400 and problem_of(r)[-1] in ("Rejected", "Bad Signature Algorithm")
    change_policy(app, allowed_algs=list(DEFAULT_ALGS))
    app2 = app
    c2 = app2.test_client()
    r = post(c2, statement(issuer_key, cty="application/json"))
    assert r.status_code == 400 and problem_of(r)[-1] == "Rejected" and "content type" in problem_of(r)[-2]
    r = post(c2, statement(issuer_key, cty="application/spdx+json", payload=b"x" * 500))
    assert r.status_code == 413 and problem_of(r)[-1] == "Payload Too Large"
    r = post(c2, statement(issuer_key, cty="application/spdx+json"))
    assert r.status_code == 201
    assert svc_of(app2).tree_size() == size0 + 2  # the changed policy, then the statement


def test_detached_payload_multipart(app, client, issuer_key):
    payload = b'{"artifact": "sha256:abcd"}'
    st = statement(issuer_key, payload=payload, detached=True)
    r = client.post("/entries", data={"statement": (__import__("io").BytesIO(st), "s.cose", "application/cose"),
                                      "payload": (__import__("io").BytesIO(payload), "p", "application/json")},
                    content_type="multipart/form-data")
    assert r.status_code == 201, problem_of(r)
    r = client.post("/entries", data={"statement": (__import__("io").BytesIO(st), "s.cose", "application/cose"),
                                      "payload": (__import__("io").BytesIO(b"other"), "p", "application/json")},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and problem_of(r)[-1] == "Rejected"


def test_unsupported_media_type_and_methods(client, issuer_key):
    r = post(client, statement(issuer_key), ctype="application/json")
    assert r.status_code == 415 and problem_of(r)[-1] == "Unsupported Media Type"
    r = client.delete("/entries")
    assert r.status_code == 405 and problem_of(r)[-1] == "Method Not Allowed"
    assert "POST" in r.headers["Allow"] and "GET" in r.headers["Allow"]
    r = client.put("/checkpoint")
    assert r.status_code == 405 and problem_of(r)
    r = client.get("/no/such/route")
    assert r.status_code == 404 and problem_of(r)[-1] == "Not Found"


# ---------------------------------------------------------------- GET routes, malformed ids and parameters

@pytest.mark.parametrize(
    "url,status,title",
    [
        ("/entries/xyz", 400, "Invalid locator"),
        ("/entries/" + "g" * 64, 400, "Invalid locator"),
        ("/entries/" + "a" * 63, 400, "Invalid locator"),
        ("/entries/-1", 400, "Invalid locator"),
        ("/entries/01", 400, "Invalid locator"),
        ("/entries/1e3", 400, "Invalid locator"),
        ("/entries/99999999999999999999999", 400, "Invalid locator"),
        ("/entries/" + "ab" * 32, 404, "Not Found"),
        ("/entries/" + "ab" * 32 + "/statement", 404, "Not Found"),
        ("/entries/123456", 404, "Not Found"),
        ("/entries/0/receipt?size=abc", 400, "Malformed request"),
        ("/entries/0/receipt?size=-1", 400, "Malformed request"),
        ("/entries/0/receipt?size=0", 400, "Malformed request"),
        ("/entries/0/receipt?size=999999", 400, "Malformed request"),
        ("/consistency", 400, "Malformed request"),
        ("/consistency?from=1", 400, "Malformed request"),
        ("/consistency?from=x&to=1", 400, "Malformed request"),
        ("/consistency?from=0&to=1", 400, "Malformed request"),
        ("/consistency?from=2&to=1", 400, "Malformed request"),
        ("/consistency?from=1&to=999999", 400, "Malformed request"),
        ("/consistency?from=1&to=1.5", 400, "Malformed request"),
        ("/tile/0/1234", 400, "Malformed request"),
        ("/tile/64/000", 400, "Malformed request"),
        ("/tile/0/000.p/0", 400, "Malformed request"),
        ("/tile/0/000.p/256", 400, "Malformed request"),
        ("/tile/0/x000/000", 400, "Malformed request"),
        ("/tile/0/000", 404, "Not Found"),
        ("/tile/entries/001.p/3", 404, "Not Found"),
        ("/tile/0/000.p/200", 404, "Not Found"),
        ("/entries?iss=", 400, "Malformed request"),
        ("/entries?statement-hash=zz", 400, "Malformed request"),
        ("/entries?payload-hash=12", 400, "Malformed request"),
        ("/entries?iss=a&limit=0", 400, "Malformed request"),
        ("/entries?iss=a&after=x", 400, "Malformed request"),
        ("/entries", 400, "Malformed request"),
        ("/.well-known/scitt-keys/AAAA", 404, "No such key"),
    ],
)
def test_malformed_get(client, url, status, title):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:200])
    assert problem_of(r)[-1] == title


# ---------------------------------------------------------------- keys, configuration, checkpoint, tiles

def test_keys_and_configuration(app, client):
    svc = svc_of(app)
    ks = vkeys.decode_keyset(client.get("/.well-known/scitt-keys").data)
    kid = svc.keys.receipt.kid
    assert [k[2] for k in ks] == [kid]
    assert vkeys.thumbprint(ks[0]) == kid
    import urllib.parse

    for form in (base64.urlsafe_b64encode(kid).rstrip(b"=").decode(), kid.hex(), urllib.parse.quote(kid)):
        r = client.get(f"/.well-known/scitt-keys/{form}")
        assert r.status_code == 200 and r.mimetype == "application/cbor"
        assert cbor2.loads(r.data)[2] == kid
    conf = cbor2.loads(client.get("/.well-known/transparency-configuration").data)
    assert conf["issuer"] == "https://test.example"
    assert conf["checkpoint_origin"] == "test.example/log"
    assert conf["jwks_uri"].endswith("/jwks")
    v = vnote.NoteVerifier.from_vkey(conf["checkpoint_vkey"])
    cp = client.get("/checkpoint")
    assert cp.headers["Content-Type"] == "text/plain; charset=utf-8"
    n = vnote.open_note(cp.data, [v])
    c = vnote.Checkpoint.parse(n.text)
    assert c.origin == "test.example/log" and c.size == svc.tree_size()
    jwks = client.get("/jwks").get_json()
    assert jwks["keys"][0]["kty"] == "EC" and jwks["keys"][0]["crv"] == "P-256"
    h = client.get("/health")
    assert h.status_code == 200 and h.get_json()["tree_size"] == svc.tree_size()


def test_transparency_configuration_json_on_request_cbor_by_default(client):
    """CBOR stays the default (no Accept, */*, application/cbor); JSON when the client asks for it."""
    want = cbor2.loads(client.get("/.well-known/transparency-configuration").data)
    for accept in (None, "*/*", "application/cbor", "application/cbor, application/json;q=0.5"):
        r = client.get("/.well-known/transparency-configuration", headers={"Accept": accept} if accept else {})
        assert r.mimetype == "application/cbor" and cbor2.loads(r.data) == want, accept
    for accept in ("application/json", "application/json, application/cbor;q=0.5", "text/html, application/json"):
        r = client.get("/.well-known/transparency-configuration", headers={"Accept": accept})
        assert r.status_code == 200 and r.mimetype == "application/json", accept
        assert r.get_json() == want and "Accept" in r.headers["Vary"]
    assert want["checkpoint_vkey"].startswith(want["checkpoint_origin"] + "+")


def test_policy_is_registered_and_traceable(app, client, issuer_key):
    svc = svc_of(app)
    conf = cbor2.loads(client.get("/.well-known/transparency-configuration").data)
    pid = conf["registration_policy"]
    r = client.get(f"/entries/{pid}/statement")
    assert r.status_code == 200
    ts = r.data
    # the transparent statement: statement + receipt in 394, verifiable with the log key
    st = SignedStatement.parse(ts)
    st.verify(svc.keys.receipt.private.public_key())
    assert st.leaf_input.hex() == pid
    receipts = vtransparent.extract_receipts(ts)
    vreceipt.verify_inclusion_receipt(receipts[0], st.leaf_input, log_keys(app))
    doc = cbor2.loads(st.payload)
    assert doc["max-statement-size"] == 8192
    assert {vkeys.thumbprint(k) for k in doc["issuer-keys"]} == set(svc.policy.trust.issuer_keys)
    assert len(doc["trust-anchors"]) == 1
    # a registered entry records the policy it was admitted under
    post(client, statement(issuer_key, sub="traced"))
    idx = svc.log.lookup("policy", pid)
    assert idx and all(svc.log.entry_data(i) for i in idx)
    # the log's own policy statements cannot be submitted from outside
    r = post(client, svc.log.entry_data(0))
    assert r.status_code == 400


def test_policy_change_registers_new_policy(tmp_path, make_app, issuer_key):
    from tlog.logstate import StartupError

    app1 = make_app()
    svc1 = svc_of(app1)
    p1 = svc1.policy_id
    app_other = make_app()  # another worker, running before the change
    change_policy(app1, allowed_algs=[-7])
    svc1.close()
    with pytest.raises(StartupError, match=r"allowed-algs: the options add \[-35\] and drop \[-7\]"):
        make_app(allowed_algs=[-35])  # a server whose options disagree with the policy in force
    app2 = make_app()
    svc2 = svc_of(app2)
    assert svc2.policy_id != p1
    doc = cbor2.loads(SignedStatement.parse(svc2.log.entry_data(svc2.log.find(bytes.fromhex(svc2.policy_id)))).payload)
    assert doc["previous"] == p1 and doc["allowed-algs"] == [-7]
    svc2.close()
    app3 = make_app(allowed_algs=[-7])  # agrees: no new entry
    assert svc_of(app3).policy_id == svc2.policy_id
    assert svc_of(app3).tree_size() == 2
    # the other worker sees the change without a restart, within the refresh interval
    import time as _time

    deadline = _time.monotonic() + 5
    while svc_of(app_other).policy_id != svc2.policy_id and _time.monotonic() < deadline:
        _time.sleep(0.05)
    assert svc_of(app_other).policy_id == svc2.policy_id
    r = post(app_other.test_client(), statement(ed25519_key(), kid=b"\x01" * 32))
    assert r.status_code == 400 and problem_of(r)[-1] == "Bad Signature Algorithm"


def test_tiles_checkpoint_and_consistency(app, client, issuer_key):
    svc = svc_of(app)
    sts = [statement(issuer_key, sub=f"t/{i}") for i in range(5)]
    first = post(client, sts[0])
    info1 = vreceipt.verify_inclusion_receipt(first.data, SignedStatement.parse(sts[0]).leaf_input, log_keys(app))
    for st in sts[1:]:
        assert post(client, st).status_code == 201
    size = svc.tree_size()
    # tiles: level-0 partial tile and entry bundle reproduce the root of the checkpoint
    tile = client.get(f"/tile/0/000.p/{size}")
    assert tile.status_code == 200 and tile.headers["Cache-Control"] != "public, max-age=31536000, immutable"
    hashes = [tile.data[i : i + 32] for i in range(0, len(tile.data), 32)]
    bundle = client.get(f"/tile/entries/000.p/{size}").data
    leaves = [bundle[i + 2 : i + 34] for i in range(0, len(bundle), 34)]
    assert [merkle.leaf_hash(d) for d in leaves] == hashes
    conf = cbor2.loads(client.get("/.well-known/transparency-configuration").data)
    cp = vnote.Checkpoint.parse(vnote.open_note(client.get("/checkpoint").data, [vnote.NoteVerifier.from_vkey(conf["checkpoint_vkey"])]).text)
    assert cp.size == size and merkle.root_of(hashes) == cp.root
    # consistency receipt from the first receipt's tree to the checkpoint
    r = client.get(f"/consistency?from={info1.size}&to={size}")
    assert r.status_code == 200 and r.mimetype == "application/cose"
    cinfo = vreceipt.verify_consistency_receipt(r.data, size1=info1.size, root1=info1.root, keys=log_keys(app))
    assert cinfo.size2 == size and cinfo.root2 == cp.root
    # a tampered old root does not verify
    with pytest.raises(VerificationError):
        vreceipt.verify_consistency_receipt(r.data, size1=info1.size, root1=b"\x00" * 32, keys=log_keys(app))
    # a receipt for the first entry at the checkpoint size
    r2 = client.get(f"/entries/{info1.index}/receipt?size={size}")
    info2 = vreceipt.verify_inclusion_receipt(r2.data, SignedStatement.parse(sts[0]).leaf_input, log_keys(app))
    assert info2.size == size and info2.root == cp.root
    # lookups
    res = cbor2.loads(client.get("/entries?iss=https://issuer.example&sub=t/3").data)
    assert [e["id"] for e in res["entries"]] == [SignedStatement.parse(sts[3]).leaf_input.hex()]
    res = cbor2.loads(client.get("/entries?iss=https://issuer.example").data)
    assert len(res["entries"]) == 5
    res = cbor2.loads(client.get(f"/entries?statement-hash={SignedStatement.parse(sts[1]).leaf_input.hex()}").data)
    assert res["entries"][0]["index"] == info1.index + 1
    ph = hashlib.sha256(SignedStatement.parse(sts[2]).payload).hexdigest()
    res = cbor2.loads(client.get(f"/entries?payload-hash={ph}").data)
    assert len(res["entries"]) == 5  # same payload in all five


def test_full_tile_is_immutable(make_app, issuer_key):
    app = make_app(max_statement_size=4096)
    client = app.test_client()
    svc = svc_of(app)
    items = []
    for i in range(260):
        st = statement(issuer_key, sub=f"full/{i}")
        s = SignedStatement.parse(st)
        items.append((s.leaf_input, s.statement_bytes, [("kind", "statement")]))
    svc.log.append(items)  # fast fill through the core (the HTTP path is covered elsewhere)
    r = client.get("/tile/0/000")
    assert r.status_code == 200 and len(r.data) == 8192
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert client.get("/tile/entries/000").status_code == 200
    assert client.get("/tile/0/001.p/5").status_code == 200


@pytest.mark.parametrize("pending_status", [302, 202])
def test_async_registration(tmp_path, make_app, issuer_key, pending_status):
    app = make_app(register_wait=0.05, pending_status=pending_status, queue_limit=2, retry_after=2)
    client = app.test_client()
    svc = svc_of(app)
    lock = svc.log._int_lock  # hold the core's integration lock: the sequencer cannot integrate
    lock.acquire()
    try:
        st = statement(issuer_key, sub="slow")
        r = post(client, st)
        assert r.status_code == 303 and r.headers["Retry-After"] == "2"
        loc = r.headers["Location"]
        assert loc == f"/entries/{SignedStatement.parse(st).leaf_input.hex()}"
        g = client.get(loc)
        assert g.status_code == pending_status and g.headers["Location"] == loc and g.headers["Retry-After"] == "2"
        assert client.get(loc + "/statement").status_code == pending_status
        post(client, statement(issuer_key, sub="slow2"))
        full = post(client, statement(issuer_key, sub="slow3"))
        assert full.status_code == 503 and full.headers["Retry-After"] and problem_of(full)[-1] == "Service Unavailable"
    finally:
        lock.release()
    for _ in range(200):
        g = client.get(loc)
        if g.status_code == 200:
            break
        threading.Event().wait(0.05)
    assert g.status_code == 200
    vreceipt.verify_inclusion_receipt(g.data, SignedStatement.parse(st).leaf_input, log_keys(app))


def test_rate_limit(make_app, issuer_key):
    app = make_app(rate_limit=1.0, rate_burst=3)
    client = app.test_client()
    codes = [post(client, statement(issuer_key, sub=f"rl/{i}")).status_code for i in range(3)]
    assert codes == [201, 201, 201]
    r = post(client, statement(issuer_key, sub="rl/x"))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert problem_of(r)[-1] == "Too Many Requests"
    # another client address has its own bucket; reads outside /entries are not limited
    r = post(client, statement(issuer_key, sub="rl/y"), environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert r.status_code == 201
    assert client.get("/checkpoint").status_code == 200


def test_key_rotation_keeps_old_receipts_verifiable(tmp_path, make_app, issuer_key, capsys):
    from tlog.cli import main as tlog_main

    app = make_app()
    client = app.test_client()
    st = statement(issuer_key, sub="rot")
    r = post(client, st)
    old_kid = svc_of(app).keys.receipt.kid
    svc_of(app).close()
    assert tlog_main(["rotate-key", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out.split()
    old, new = bytes.fromhex(out[1]), bytes.fromhex(out[3])
    assert old == old_kid
    app2 = make_app()
    c2 = app2.test_client()
    ks = vkeys.decode_keyset(c2.get("/.well-known/scitt-keys").data)
    assert {k[2] for k in ks} == {old, new}
    keys = {k[2]: vkeys.public_key_from_cose_key(k) for k in ks}
    vreceipt.verify_inclusion_receipt(r.data, SignedStatement.parse(st).leaf_input, keys)
    assert c2.get("/.well-known/scitt-keys/" + base64.urlsafe_b64encode(old).rstrip(b"=").decode()).status_code == 200
    r2 = post(c2, statement(issuer_key, sub="rot2"))
    assert cose.decode_sign1(r2.data).protected[4] == new
    # the key files are private
    assert (os.stat(tmp_path / "data" / "keys" / "receipt.pem").st_mode & 0o077) == 0
    assert (os.stat(tmp_path / "data" / "keys" / "checkpoint.skey").st_mode & 0o077) == 0


def test_config_file_and_env(tmp_path):
    (tmp_path / "c.toml").write_text('data_dir = "/x"\nport = 9001\nallowed_algs = [-7]\npending_status = 202\n')
    c = Config.load(file=str(tmp_path / "c.toml"), env={"TLOG_PORT": "9002"}, overrides={"host": "127.0.0.2"})
    assert (c.data_dir, c.port, c.allowed_algs, c.pending_status, c.host) == ("/x", 9002, [-7], 202, "127.0.0.2")
    (tmp_path / "c.json").write_text('{"issuer_keys": ["a.pem"], "rate_limit": 5}')
    c = Config.load(env={"TLOG_CONFIG": str(tmp_path / "c.json"), "TLOG_TRUST_ANCHORS": "r1.pem,r2.pem"})
    assert c.issuer_keys == ["a.pem"] and c.rate_limit == 5.0 and c.trust_anchors == ["r1.pem", "r2.pem"]
    from tlog.config import ConfigError

    with pytest.raises(ConfigError):
        Config.load(env={}, overrides={"pending_status": 200})
    (tmp_path / "bad.toml").write_text("nonsense = 1\n")
    with pytest.raises(ConfigError):
        Config.load(file=str(tmp_path / "bad.toml"), env={})


def test_fast_receipt_encoding_matches_verifier():
    from tlog.receipts import fast_receipt

    p = vreceipt.receipt_protected(alg=-7, kid=b"k" * 32, issuer="https://i", subject="o", iat=1700000000)
    for size, index, n in [(1, 0, 0), (2, 1, 1), (300, 17, 9), (70000, 65535, 17), (2**40, 2**39, 40)]:
        path = [bytes([i]) * 32 for i in range(n)]
        assert fast_receipt(p, b"s" * 64, -1, [size, index, path]) == vreceipt.assemble_receipt(
            p, b"s" * 64, inclusion=[vreceipt.encode_inclusion_proof(size, index, path)]
        )
        assert fast_receipt(p, b"s" * 64, -2, [index + 1, size, path]) == vreceipt.assemble_receipt(
            p, b"s" * 64, consistency=[vreceipt.encode_consistency_proof(index + 1, size, path)]
        )


def test_batch_receipts_equal_one_by_one(make_app, issuer_key):
    """A batch's receipts (one tile load, common bytes encoded once) are byte for byte the
    receipts made one at a time, at the batch's size and at an earlier one."""
    from tlog.receipts import fast_inclusion_receipts, fast_receipt

    p = vreceipt.receipt_protected(alg=-7, kid=b"k" * 32, issuer="https://i", subject="o", iat=1700000000)
    paths = [[bytes([i]) * 32 for i in range(n)] for n in (0, 1, 9, 17)]
    assert fast_inclusion_receipts(p, b"s" * 64, 70000, [0, 1, 2, 65535], paths) == [
        fast_receipt(p, b"s" * 64, -1, [70000, i, path]) for i, path in zip([0, 1, 2, 65535], paths)]
    app = make_app()
    svc = app.extensions["tlog.service"]
    entries = svc.log.append([(hashlib.sha256(b"%d" % i).digest(), b"", ()) for i in range(300)])
    entries += svc.log.append([(hashlib.sha256(b"x%d" % i).digest(), b"", ()) for i in range(5)])
    sizes = sorted({e.tree_size for e in entries})
    assert len(sizes) == 2
    for size in sizes:
        idxs = [e.index for e in entries if e.tree_size == size]
        assert svc.inclusion_receipts(idxs, size) == [svc.inclusion_receipt(i, size) for i in idxs]
    n = sizes[1]
    assert svc.log.inclusion_proofs([0, 255, 256, n - 1], n) == [svc.log.inclusion_proof(i, n) for i in
                                                                 (0, 255, 256, n - 1)]
    with pytest.raises(ValueError):
        svc.log.inclusion_proofs([0, n], n)


@pytest.mark.postgres
def test_postgres_backend(make_app, issuer_key):
    from tests.tlog_fixtures import fresh_pg_database

    with fresh_pg_database("tlog_srv") as url:
        app = make_app(database_url=url)
        client = app.test_client()
        st = statement(issuer_key, sub="pg")
        r = post(client, st)
        assert r.status_code == 201
        vreceipt.verify_inclusion_receipt(r.data, SignedStatement.parse(st).leaf_input, log_keys(app))
        assert client.get(r.headers["Location"]).data == r.data
        assert svc_of(app).tree_size() == 2
        svc_of(app).close()


def test_receipt_sizes_must_be_tree_heads(app, client, issuer_key):
    """No size gets a second receipt signature: sizes between two heads are refused."""
    svc = svc_of(app)
    sts = [statement(issuer_key, sub=f"h/{i}") for i in range(4)]
    items = []
    for st in sts:
        s = SignedStatement.parse(st)
        items.append((s.leaf_input, s.statement_bytes, [("kind", "statement")]))
    svc.log.append(items)  # one batch: one new head, sizes in between have none
    size = svc.tree_size()
    r = client.get(f"/entries/1/receipt?size={size - 1}")
    assert r.status_code == 400 and "tree head" in problem_of(r)[-2]
    r = client.get(f"/consistency?from=1&to={size - 2}")
    assert r.status_code == 400
    assert client.get(f"/entries/1/receipt?size={size}").status_code == 200
    assert client.get(f"/consistency?from=1&to={size}").status_code == 200
    assert client.get(f"/consistency?from={size}&to={size}").status_code == 200


def test_kid_and_x5chain_both_checked(make_app, issuer_key, pki):
    """A statement naming a trusted kid and an x5chain: both registered identifiers must verify."""
    _, leaf_key, leaf_cert = pki
    app = make_app()
    c = app.test_client()
    # signed by the x5chain leaf but naming the trusted issuer kid: the kid check fails
    st = statement(leaf_key, iss="https://issuer.example", kid=kid_of(issuer_key), extra={33: [der(leaf_cert)]})
    r = post(c, st)
    assert r.status_code == 400 and problem_of(r)[-1] == "Rejected"
    # without trust anchors the x5chain is not a registered identifier: the trusted kid decides
    change_policy(app, trust_anchors=[])
    c2 = c
    st2 = statement(issuer_key, iss="https://issuer.example", extra={33: [der(leaf_cert)]})
    assert post(c2, st2).status_code == 201
    r = post(c2, statement(leaf_key, iss="https://issuer.example", kid=False, extra={33: [der(leaf_cert)]}))
    assert r.status_code == 400 and "trust anchor" in problem_of(r)[-2]


def test_chunked_body_over_limit(client):
    """No Content-Length (chunked): the body is read up to the limit only, then 413."""
    import io

    big = io.BytesIO(b"\xd2" + b"\x00" * 20000)
    r = client.post("/entries", input_stream=big, content_type="application/cose",
                    environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert r.status_code == 413 and problem_of(r)[-1] == "Payload Too Large"
    assert big.tell() <= 16384 + 1 + 65536  # not read to the end


def test_raw_kid_route_matches_any_byte():
    """A raw binary kid percent-encodes any byte, "/" and newlines included: the route must match."""
    import urllib.parse

    from werkzeug.routing import Map, Rule
    from werkzeug.test import EnvironBuilder

    from tlog.server.app import _AnyPathConverter

    m = Map([Rule("/.well-known/scitt-keys/<anypath:kid>", endpoint="k")], converters={"anypath": _AnyPathConverter})
    for kid in (b"a/b\nc\rd", b"\x0a" * 32, b"/" + bytes(range(256))[:31]):
        env = EnvironBuilder(path="/.well-known/scitt-keys/" + urllib.parse.quote(kid)).get_environ()
        endpoint, args = m.bind_to_environ(env).match()
        assert endpoint == "k" and env["PATH_INFO"].encode("latin-1").endswith(kid)
