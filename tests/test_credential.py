"""Relying-party check (verifier.credential) against records registered in the real log app."""

from __future__ import annotations

import argparse
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from issuer.credentials import Pointer, mint_wit, new_record_id, public_jwk
from issuer.service import IssuancePolicy
from verifier import VerificationError
from verifier import cbor as vcbor
from verifier import keys as vkeys
from verifier.credential import (AllOf, AnyOf, EarVerified, MaxRecordAge, SbomPresent, StatusAffirming,
                                 UnsafeNoOp, VerifierIs, add_parser, verify_credential)

from .test_twi_support import LOG_URL, bound, trust_for, twi_env, wpr_statement  # noqa: F401

WID = "spiffe://prod.test/payments"


def issue(env, *, fmt="wit", wpr=True, **kw):
    reg = None
    if wpr:
        _, reg = env.issuer.register_workload_provenance(wpr_statement(env))
    out = env.issuer.issue(**bound(env.verifier, env.workload_key, **kw), workload_id=WID, fmt=fmt)
    stmts = [out.registration.transparent_statement] + ([reg.transparent_statement] if reg else [])
    return out, stmts


def fails(check, *a, **kw):
    with pytest.raises(VerificationError) as ei:
        verify_credential(*a, **kw)
    assert ei.value.check == check, str(ei.value)
    return ei.value


FULL = AllOf([StatusAffirming(), SbomPresent(), MaxRecordAge(300), EarVerified(),
              VerifierIs("https://verifier.test")])


@pytest.mark.parametrize("fmt", ["wit", "x509-svid"])
def test_valid_credential_verifies(twi_env, fmt):
    out, stmts = issue(twi_env, fmt=fmt)
    res = verify_credential(out.credential.raw, stmts, trust_for(twi_env), policy=FULL)
    assert res.record["rid"] == out.rid and res.ear_verified and len(res.workload_provenance) == 1
    assert res.receipts[0].ok and res.receipts[0].issuer == LOG_URL


def test_swapped_credential_refused(twi_env):
    a, stmts_a = issue(twi_env)
    b, _ = issue(twi_env, wpr=False)
    fails("binding.record-missing", b.credential.raw, stmts_a, trust_for(twi_env))


def test_record_replayed_for_another_credential(twi_env):
    """A second credential pointing at an existing record id: the record names another digest/jti."""
    a, stmts = issue(twi_env)
    forged = mint_wit(twi_env.issuer_key, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(twi_env.workload_key),
                      pointer=a.credential.pointer)
    fails("binding.digest", forged.raw, stmts, trust_for(twi_env))


def test_tampered_record_refused(twi_env):
    out, stmts = issue(twi_env)
    ts = stmts[0]
    i = ts.find(b"affirming")
    tampered = ts[:i] + b"warning!!" + ts[i + 9:]
    fails("record.signature", out.credential.raw, [tampered] + stmts[1:], trust_for(twi_env))


def test_tampered_credential_refused(twi_env):
    out, stmts = issue(twi_env)
    h, p, s = out.credential.raw.decode().split(".")
    bad_sig = f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}".encode()
    fails("credential.signature", bad_sig, stmts, trust_for(twi_env))
    claims = json.loads(__import__("jwt").utils.base64url_decode(p))
    claims["sub"] = "spiffe://prod.test/admin"
    p2 = __import__("jwt").utils.base64url_encode(json.dumps(claims).encode()).decode()
    fails("credential.signature", f"{h}.{p2}.{s}".encode(), stmts, trust_for(twi_env))


def test_pointer_to_missing_record(twi_env):
    out, stmts = issue(twi_env)
    lonely = mint_wit(twi_env.issuer_key, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(twi_env.workload_key),
                      pointer=Pointer(new_record_id(), LOG_URL))
    fails("binding.record-missing", lonely.raw, stmts, trust_for(twi_env))
    r = twi_env.app.test_client().get("/twi/v1/cpr", query_string={"rid": lonely.pointer.rid})
    assert r.status_code == 404 and vcbor.loads(r.data)[-1] == "Not Found"


def test_untrusted_log_and_issuer(twi_env):
    from cryptography.hazmat.primitives.asymmetric import ec
    out, stmts = issue(twi_env)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    fails("record.receipt", out.credential.raw, stmts, trust_for(twi_env, log_keys={b"x" * 32: other}))
    fails("record.log", out.credential.raw, stmts, trust_for(twi_env, logs=["https://elsewhere.test"]))
    fails("credential.signature", out.credential.raw, stmts,
          trust_for(twi_env, issuer_keys={vkeys.thumbprint(other): other}, ca_certs=[]))


def test_stripped_receipt_refused(twi_env):
    from verifier import cose
    out, stmts = issue(twi_env)
    m = cose.decode_sign1(stmts[0])
    bare = cose.encode_sign1(m.protected_raw, {}, m.payload, m.signature)
    fails("record.receipt", out.credential.raw, [bare], trust_for(twi_env))


def test_expired_credential(twi_env):
    out, stmts = issue(twi_env)
    fails("credential.expired", out.credential.raw, stmts, trust_for(twi_env), now=time.time() + 7200)
    verify_credential(out.credential.raw, stmts, trust_for(twi_env), now=time.time() + 7200, check_time=False)


def test_policies(twi_env):
    out, stmts = issue(twi_env)
    t = trust_for(twi_env)
    fails("policy.sbom", out.credential.raw, stmts[:1], t, policy=SbomPresent())
    fails("policy.record-age", out.credential.raw, stmts, t, policy=MaxRecordAge(10), now=time.time() + 60,
          check_time=False)
    fails("policy.ear", out.credential.raw, stmts, trust_for(twi_env, verifier_keys=[]), policy=EarVerified())
    fails("policy.verifier", out.credential.raw, stmts, t, policy=VerifierIs("https://other.test"))
    fails("policy.any-of", out.credential.raw, stmts[:1], t, policy=AnyOf([SbomPresent(), MaxRecordAge(-1)]))
    verify_credential(out.credential.raw, stmts[:1], t, policy=AnyOf([SbomPresent(), StatusAffirming()]))
    verify_credential(out.credential.raw, stmts[:1], t, policy=UnsafeNoOp())


def test_warning_status_needs_relying_party_consent(twi_env):
    from issuer.appraisal import AppraisalPolicy

    from .test_twi_support import policy_obj
    twi_env.issuer.appraisal_policy = AppraisalPolicy.from_obj(policy_obj(submods={"*": {"accept_warning": True}}))
    out, stmts = issue(twi_env, status="warning")
    fails("policy.status", out.credential.raw, stmts, trust_for(twi_env))
    verify_credential(out.credential.raw, stmts, trust_for(twi_env), policy=StatusAffirming(allow_warning=True))


def test_embedded_ear_from_untrusted_verifier(twi_env):
    from .test_twi_support import TestVerifier
    from verifier.credential import load_verifier_keys
    out, stmts = issue(twi_env)
    fails("record.ear-signature", out.credential.raw, stmts,
          trust_for(twi_env, verifier_keys=load_verifier_keys(TestVerifier().keys_obj())))


def test_private_record(twi_env):
    twi_env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i", "private_records": True})
    out, stmts = issue(twi_env)
    assert out.private
    from verifier.statement import SignedStatement
    st = SignedStatement.parse(stmts[0])
    assert st.hash_envelope is not None and st.sub == out.rid and b"spiffe" not in st.statement_bytes
    fails("record.private", out.credential.raw, stmts, trust_for(twi_env))
    plain = twi_env.issuer.vault.get(out.rid)
    res = verify_credential(out.credential.raw, stmts, trust_for(twi_env), record=plain, policy=FULL)
    assert res.private
    rec = vcbor.loads(plain)
    rec["attestation"]["ear_status"] = "affirming "
    fails("record.digest", out.credential.raw, stmts, trust_for(twi_env), record=vcbor.dumps(rec))
    # private records are found by record id only
    c = twi_env.app.test_client()
    assert c.get("/twi/v1/cpr", query_string={"rid": out.rid}).status_code == 200
    assert c.get("/twi/v1/cpr", query_string={"sha256": out.credential.sha256}).status_code == 404


def test_lookups(twi_env):
    wit, _ = issue(twi_env, wpr=False)
    svid, _ = issue(twi_env, fmt="x509-svid", wpr=False)
    c = twi_env.app.test_client()
    for q, want in [({"rid": wit.rid}, wit), ({"iss": "https://issuer.test", "jti": wit.credential.jti}, wit),
                    ({"sha256": wit.credential.sha256}, wit), ({"sha256": svid.credential.sha256.upper()}, svid),
                    ({"issuer_dn": svid.credential.issuer_dn, "serial": svid.credential.serial}, svid)]:
        r = c.get("/twi/v1/cpr", query_string=q)
        assert r.status_code == 200, q
        arr = vcbor.loads(r.data)
        assert len(arr) == 1
        verify_credential(want.credential.raw, arr, trust_for(twi_env))
    for q in [{}, {"rid": wit.rid, "sha256": "00" * 32}, {"sha256": "xyz"}, {"iss": "https://issuer.test"},
              {"issuer_dn": "CN=x", "serial": "zz"}]:
        r = c.get("/twi/v1/cpr", query_string=q)
        assert r.status_code == 400, q
    assert c.get("/twi/v1/cpr", query_string={"iss": "https://issuer.test", "jti": "nope"}).status_code == 404


def test_index_attrs():
    from tlog.twi.index import attrs_for_statement
    from verifier.statement import SignedStatement
    from cryptography.hazmat.primitives.asymmetric import ec
    from issuer.provenance import IssuerIdentity, sign_cpr, sign_workload_provenance
    k = ec.generate_private_key(ec.SECP256R1())
    ident = IssuerIdentity("https://issuer.test", k)
    rid = new_record_id()
    rec = {"type": "tag:twi-tlog.example,2026:cpr/v1", "rid": rid,
           "credential": {"iss": "https://issuer.test", "jti": "j1", "digest": {"sha256": "ab" * 32}}}
    st = SignedStatement.parse(sign_cpr(ident, vcbor.dumps(rec), rid=rid, sub=WID, iat=1))
    assert attrs_for_statement(st) == [("twi.cpr.rid", rid), ("twi.cred.iss_jti", '["https://issuer.test","j1"]'),
                                       ("twi.cred.sha256", "ab" * 32)]
    other = SignedStatement.parse(sign_cpr(ident, vcbor.dumps(rec), rid=new_record_id(), sub=WID, iat=1))
    assert ("twi.cpr.rid", rid) not in attrs_for_statement(other)  # header and payload disagree: not indexed
    priv = SignedStatement.parse(sign_cpr(ident, vcbor.dumps(rec), rid=rid, sub=WID, iat=1, private_location="https://x"))
    assert attrs_for_statement(priv) == [("twi.cpr.rid", rid)]
    wpr = SignedStatement.parse(sign_workload_provenance(ident, {"predicate": {"workload_id": WID}}))
    assert attrs_for_statement(wpr) == []


def test_cli_exit_codes(twi_env, tmp_path, capsys):
    out, stmts = issue(twi_env)
    (tmp_path / "cred.jwt").write_bytes(out.credential.raw)
    (tmp_path / "ts.cbor").write_bytes(vcbor.dumps(stmts))
    (tmp_path / "log.keys").write_bytes(twi_env.app.extensions["tlog.service"].keys.keyset_bytes())
    (tmp_path / "issuer.pem").write_bytes(twi_env.issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "verifiers.json").write_text(json.dumps(twi_env.verifier.keys_obj()))
    parser = argparse.ArgumentParser(prog="twi-verify")
    add_parser(parser.add_subparsers(dest="cmd"))

    def run(*argv):
        args = parser.parse_args(["credential", *map(str, argv)])
        return args.func(args)

    base = ["--statement", tmp_path / "ts.cbor", "--log-key", tmp_path / "log.keys", "--issuer-key", tmp_path / "issuer.pem"]
    assert run(tmp_path / "cred.jwt", *base, "--verifier-keys", tmp_path / "verifiers.json", "--require-sbom",
               "--require-ear", "--max-age", "300") == 0
    assert "OK wit" in capsys.readouterr().out
    other, _ = issue(twi_env, wpr=False)
    (tmp_path / "other.jwt").write_bytes(other.credential.raw)
    assert run(tmp_path / "other.jwt", *base) == 1
    assert run(tmp_path / "missing.jwt", *base) == 2
    (tmp_path / "junk.keys").write_bytes(b"junk")
    assert run(tmp_path / "cred.jwt", "--statement", tmp_path / "ts.cbor", "--log-key", tmp_path / "junk.keys") == 2
    # each statement in its own file (a COSE_Sign1, tag 18) verifies as the array does
    files = []
    for i, st in enumerate(stmts):
        (tmp_path / f"st{i}.cose").write_bytes(st)
        files += ["--statement", tmp_path / f"st{i}.cose"]
    keys_args = ["--log-key", tmp_path / "log.keys", "--issuer-key", tmp_path / "issuer.pem"]
    assert run(tmp_path / "cred.jwt", *files, *keys_args) == 0
    capsys.readouterr()
    # usage errors (exit 2, one line): a statement file that is neither a COSE_Sign1 nor an array,
    # no statements at all, an encrypted record without its key
    (tmp_path / "map.cbor").write_bytes(vcbor.dumps({"not": "statements"}))
    assert run(tmp_path / "cred.jwt", "--statement", tmp_path / "map.cbor", *keys_args) == 2
    assert "input.statement" in capsys.readouterr().err
    assert run(tmp_path / "cred.jwt", *keys_args) == 2
    assert "--statement" in capsys.readouterr().err
    (tmp_path / "rec.enc").write_bytes(b"\x00" * 64)
    assert run(tmp_path / "cred.jwt", *base, "--record-encrypted", tmp_path / "rec.enc") == 2
    assert "--record-key" in capsys.readouterr().err
    # an encrypted record is found by the credential's pointer: without one, a verification
    # failure (exit 1, binding.no-pointer), not a crash
    nop = mint_wit(twi_env.issuer_key, iss="https://issuer.test", sub=WID, pointer=None,
                   cnf_jwk=public_jwk(twi_env.workload_key.public_key()))
    (tmp_path / "nop.jwt").write_bytes(nop.raw)
    assert run(tmp_path / "nop.jwt", *base, "--record-encrypted", tmp_path / "rec.enc", "--record-key", "00" * 32) == 1
    assert "binding.no-pointer" in capsys.readouterr().err


def test_fetch_over_http_from_the_pointer(tmp_path):
    """The real log app with the TWI wiring served over HTTP: the relying party resolves the
    credential's pointer (GET /twi/v1/cpr?rid=) and the linked workload provenance itself."""
    import threading

    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from werkzeug.serving import make_server

    from issuer.appraisal import AppraisalPolicy, VerifierKeys
    from issuer.client import ScrapiClient
    from issuer.provenance import IssuerIdentity
    from issuer.service import Issuer
    from tlog.config import Config
    from tlog.server import create_app
    from tlog.twi.routes import install
    from verifier.credential import fetch_statements

    from .test_twi_support import TestVerifier, policy_obj, write_pem_public

    k = ec.generate_private_key(ec.SECP256R1())
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    app = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(tmp_path / "log"), issuer_keys=[{"path": str(write_pem_public(tmp_path / "k.pem", k)), "iss": ["https://issuer.test"]}],
        origin="log.test/fetch", issuer=url, register_wait=5.0)))
    install(app)
    srv = make_server("127.0.0.1", port, app, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        ver = TestVerifier()
        iss = Issuer(identity=IssuerIdentity("https://issuer.test", k), log_url=url,
                     appraisal_policy=AppraisalPolicy.from_obj(policy_obj()),
                     verifier_keys=VerifierKeys.from_obj(ver.keys_obj()),
                     issuance_policy=IssuancePolicy.from_obj({"id": "urn:i"}), client=ScrapiClient(url))
        env = type("E", (), {"issuer": iss})()
        iss.register_workload_provenance(wpr_statement(env))
        out = iss.issue(**bound(ver, ed25519.Ed25519PrivateKey.generate()), workload_id=WID)
        stmts = fetch_statements(out.credential.pointer)
        assert len(stmts) == 2  # the record and the workload provenance it links to
        from verifier.credential import TrustConfig
        trust = TrustConfig(log_keys=app.extensions["tlog.service"].keys.public_keys(),
                            issuer_keys={vkeys.thumbprint(k): k.public_key()})
        res = verify_credential(out.credential.raw, stmts, trust, policy=AllOf([StatusAffirming(), SbomPresent()]))
        assert res.receipts[0].issuer == url
    finally:
        srv.shutdown()
        th.join(5)
        app.extensions["tlog.service"].close()


def test_copies_and_conflicting_records(twi_env):
    out, stmts = issue(twi_env, wpr=False)
    from verifier import cose
    m = cose.decode_sign1(stmts[0])
    bare = cose.encode_sign1(m.protected_raw, {}, m.payload, m.signature)
    # the same statement twice, one copy without a receipt: the good copy is used
    verify_credential(out.credential.raw, [bare, stmts[0]], trust_for(twi_env))
    # a second, different statement claiming the same record id is ambiguous
    from issuer.provenance import sign_cpr
    other = sign_cpr(twi_env.issuer.identity, m.payload, rid=out.rid, sub=WID, iat=12345)
    fails("binding.ambiguous", out.credential.raw, [stmts[0], other], trust_for(twi_env))


def test_workload_provenance_whose_header_names_another_workload(twi_env):
    """The WPR statement's CWT sub must be its predicate's workload_id (what the log indexes and
    shows is what the statement is about)."""
    import json as _json

    from issuer.provenance import HDR_CTY, HDR_CWT, HDR_KID, WprRef
    from verifier import cose
    from verifier.credential import INTOTO_MEDIA_TYPE

    doc = wpr_statement(twi_env)
    ident = twi_env.issuer.identity
    signed = cose.sign1(ident.key, {HDR_CTY: INTOTO_MEDIA_TYPE, HDR_KID: ident.kid,
                                    HDR_CWT: {1: ident.id, 2: "spiffe://prod.test/other", 6: 1}},
                        _json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    reg = twi_env.client.register(signed)
    ref = WprRef.from_statement(doc, reg.entry_url, reg.leaf_input.hex())
    out = twi_env.issuer.issue(**bound(twi_env.verifier, twi_env.workload_key), workload_id=WID, wpr=ref)
    fails("binding.workload-mismatch", out.credential.raw, [out.registration.transparent_statement,
                                                            reg.transparent_statement], trust_for(twi_env))


def test_status_statements_count_only_for_their_record(twi_env):
    """A status statement revokes a record only when it names that record's id AND the leaf of
    the verified statement, comes from the record's issuer, and verifies with a receipt."""
    from issuer.provenance import build_status, sign_status
    from verifier import cose
    from verifier.statement import SignedStatement

    out, stmts = issue(twi_env, wpr=False)
    leaf = SignedStatement.parse(stmts[0]).leaf_input.hex()
    ident = twi_env.issuer.identity

    def logged(status, identity=ident):
        return twi_env.client.register(sign_status(identity, status)).transparent_statement

    wrong_leaf = logged(build_status(rid=out.rid, record_sha256="00" * 32, reason="x"))
    verify_credential(out.credential.raw, stmts + [wrong_leaf], trust_for(twi_env))
    from issuer.provenance import IssuerIdentity
    other_iss = logged(build_status(rid=out.rid, record_sha256=leaf), IssuerIdentity("https://other.test", ident.key))
    verify_credential(out.credential.raw, stmts + [other_iss], trust_for(twi_env))
    real = logged(build_status(rid=out.rid, record_sha256=leaf, reason="retired"))
    m = cose.decode_sign1(real)
    unlogged = cose.encode_sign1(m.protected_raw, {}, m.payload, m.signature)
    verify_credential(out.credential.raw, stmts + [unlogged], trust_for(twi_env))
    e = fails("status.revoked", out.credential.raw, stmts + [real], trust_for(twi_env))
    assert "retired" in e.detail
    res = verify_credential(out.credential.raw, stmts + [wrong_leaf, other_iss], trust_for(twi_env))
    assert res.statuses == []


def test_external_record_whose_id_is_not_its_statements(twi_env):
    """External binding: the record's rid must be its statement's cti (what the log indexes and
    what status statements name)."""
    from issuer.credentials import mint_wit, public_jwk
    from issuer.provenance import build_cpr, encode_cpr, sign_cpr
    from verifier.credential import TrustConfig
    from issuer.appraisal import appraise

    env = twi_env
    args = bound(env.verifier, env.workload_key)
    a = appraise(args["ear"], env.issuer.appraisal_policy, env.issuer.verifier_keys, nonce=args["nonce"])
    cred = mint_wit(env.issuer_key, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(env.workload_key),
                    pointer=None)
    rec = build_cpr(rid="urn:uuid:record", credential=cred, appraisal=a, issuer_id="https://issuer.test",
                    issuance_policy_id="urn:i", issuance_policy_digest="00" * 32, external=True)
    for cti, ok in (("urn:uuid:record", True), ("urn:uuid:another", False)):
        ts = env.client.register(sign_cpr(env.issuer.identity, encode_cpr(rec), rid=cti, sub=WID,
                                          iat=1)).transparent_statement
        trust = TrustConfig(**{**trust_for(env).__dict__, "logs": [LOG_URL]})
        if ok:
            verify_credential(cred.raw, [ts], trust)
        else:
            fails("binding.record-id", cred.raw, [ts], trust)


def test_external_binding_passes_over_records_it_cannot_verify(twi_env):
    """Someone else's (unverifiable) record claiming the same (iss, jti) neither satisfies nor
    blocks the external binding."""
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    from issuer.credentials import mint_wit, public_jwk
    from issuer.provenance import IssuerIdentity, sign_cpr
    from verifier.credential import TrustConfig

    env = twi_env
    out = env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID, binding="external")
    assert out.credential.pointer is None
    trust = TrustConfig(**{**trust_for(env).__dict__, "logs": [LOG_URL]})
    ts = out.registration.transparent_statement
    verify_credential(out.credential.raw, [ts], trust)
    twin = mint_wit(env.issuer_key, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(env.workload_key),
                    pointer=None, jti=out.credential.jti)
    rogue_rec = dict(out.record, credential={**out.record["credential"], "digest": {"sha256": twin.sha256}})
    from issuer.provenance import encode_cpr
    rogue = sign_cpr(IssuerIdentity("https://issuer.test", _ec.generate_private_key(_ec.SECP256R1())),
                     encode_cpr(rogue_rec), rid=out.rid, sub=WID, iat=1)
    verify_credential(out.credential.raw, [rogue, ts], trust)     # the rogue record is passed over
    fails("binding.record-missing", twin.raw, [rogue], trust)    # and serves no other credential


def test_logged_policies_checked(twi_env):
    from issuer.provenance import IssuerIdentity, sign_policy
    from verifier import cose

    env = twi_env
    out, stmts = issue(env, wpr=False)
    ap, ip = env.issuer.appraisal_policy, env.issuer.issuance_policy
    a_url = env.issuer._policy_entries[f"appraisal:{ap.digest}"]
    i_url = env.issuer._policy_entries[f"issuance:{ip.digest}"]
    pols = [env.client.statement(a_url), env.client.statement(i_url)]
    res = verify_credential(out.credential.raw, stmts + pols, trust_for(env), check_policies=True)
    assert res.policies == {"appraisal": ap.raw, "issuance": ip.raw}
    m = cose.decode_sign1(pols[0])
    bare = cose.encode_sign1(m.protected_raw, {}, m.payload, m.signature)  # same leaf, no receipt
    fails("policy.unverified", out.credential.raw, stmts + [bare, pols[1]], trust_for(env), check_policies=True)

    def issue_referencing(url):
        env.issuer._policy_entries[f"appraisal:{ap.digest}"] = url
        o, s = issue(env, wpr=False)
        return o, s + [env.client.statement(url), pols[1]]
    o, s = issue_referencing(i_url)  # the issuance policy's entry named as the appraisal policy
    fails("policy.kind", o.credential.raw, s, trust_for(env), check_policies=True)
    foreign = env.client.register(sign_policy(IssuerIdentity("https://other.test", env.issuer_key), "appraisal",
                                              ap.id, ap.raw)).entry_url
    o, s = issue_referencing(foreign)  # the same document, logged under another issuer's name
    fails("policy.unverified", o.credential.raw, s, trust_for(env), check_policies=True)


def test_supplied_record_must_be_the_logged_public_record(twi_env):
    """A plaintext record given for a public record must be the logged one: the same bytes
    verify, other bytes are record.digest."""
    out, stmts = issue(twi_env)
    from verifier.statement import SignedStatement

    logged = SignedStatement.parse(out.registration.transparent_statement).payload
    res = verify_credential(out.credential.raw, stmts, trust_for(twi_env), record=logged)
    assert res.record["rid"] == out.rid
    rec = vcbor.loads(logged)
    rec["iat"] += 1
    fails("record.digest", out.credential.raw, stmts, trust_for(twi_env), record=vcbor.dumps(rec))
