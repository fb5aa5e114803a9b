"""Credential parsing and COSE signature guards found unchecked by mutation testing (issue 16)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from issuer.credentials import Pointer, mint_wit, new_record_id, public_jwk
from verifier import VerificationError, cose
from verifier.credential import parse_credential
from verifier.credential.der import _der_tlv, decode_pointer_ext, encode_pointer_ext
from verifier.credential.policies import AllOf, AnyOf

WID = "spiffe://prod.test/payments"


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wit_parts():
    key = ec.generate_private_key(ec.SECP256R1())
    wit = mint_wit(key, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(ed25519.Ed25519PrivateKey.generate()),
                   pointer=Pointer(new_record_id(), "https://log.test"))
    h, p, s = wit.raw.decode().split(".")
    return json.loads(base64.urlsafe_b64decode(h + "==")), json.loads(base64.urlsafe_b64decode(p + "==")), s


def _wit(parts, header=None, **claims):
    h, c, s = parts
    c = {k: v for k, v in {**c, **claims}.items() if v is not ...}
    return f"{_b64({**h, **(header or {})})}.{_b64(c)}.{s}"


def test_wit_claims_types(wit_parts):
    assert parse_credential(_wit(wit_parts)).exp == wit_parts[1]["exp"]
    for claims, check in (({"exp": ...}, "credential.exp"), ({"exp": "1900000000"}, "credential.exp"),
                          ({"exp": True}, "credential.exp"), ({"iss": 7}, "credential.iss"),
                          ({"jti": ["x"]}, "credential.jti")):
        with pytest.raises(VerificationError) as e:
            parse_credential(_wit(wit_parts, **claims))
        assert e.value.check == check, claims
    for header, check in (({"typ": "JWT"}, "credential.typ"), ({"alg": "none"}, "credential.alg"),
                          ({"alg": "HS256"}, "credential.alg")):
        with pytest.raises(VerificationError) as e:
            parse_credential(_wit(wit_parts, header))
        assert e.value.check == check, header
    # nbf: an int, else unknown (None), never a bool or text taken as a time
    assert parse_credential(_wit(wit_parts, nbf=1700000000)).nbf == 1700000000
    assert parse_credential(_wit(wit_parts, nbf=True, iat=...)).nbf is None
    assert parse_credential(_wit(wit_parts, nbf="1700000000", iat=...)).nbf is None


def test_pointer_extension_strict():
    ok = encode_pointer_ext("https://log.test", "rid-1")
    assert decode_pointer_ext(ok) == ("https://log.test", "rid-1")
    log, rid = _der_tlv(0x16, b"https://log.test"), _der_tlv(0x0C, b"rid-1")
    for bad in (_der_tlv(0x30, log + rid + _der_tlv(0x0C, b"extra")),   # a third element
                _der_tlv(0x30, _der_tlv(0x0C, b"https://log.test") + rid),  # log not IA5String
                _der_tlv(0x30, log + _der_tlv(0x16, b"rid-1")),            # rid not UTF8String
                ok + b"\x00"):
        with pytest.raises(VerificationError) as e:
            decode_pointer_ext(bad)
        assert e.value.check == "pointer.der"


@pytest.mark.parametrize("combinator", [AllOf, AnyOf])
def test_combinators_need_a_policy(combinator):
    """An empty AllOf would accept everything; an empty AnyOf nothing: both are refused."""
    with pytest.raises(VerificationError) as e:
        combinator([])
    assert e.value.check == "policy.config"


def test_ecdsa_signature_length_is_exact():
    """r || s with a zero byte slipped in before s (65 bytes): the same integers, not the COSE
    encoding; refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    tbs = cose.sig_structure(b"\xa1\x01\x26", b"payload")  # protected {1: -7}
    sig = cose.sign_tbs(key, cose.ES256, tbs)
    cose.verify_tbs(key.public_key(), cose.ES256, tbs, sig)
    for bad in (sig[:32] + b"\x00" + sig[32:], b"\x00" + sig, sig[:-1]):
        with pytest.raises(VerificationError) as e:
            cose.verify_tbs(key.public_key(), cose.ES256, tbs, bad)
        assert e.value.check == "cose.signature"


def test_embedded_ear_checks():
    """The EAR a record embeds (a CMW record [type, bstr(, ind)]): verified under a trusted
    Verifier key of the right developer and build, digest and verifier id bound."""
    import hashlib

    from tests.test_twi_support import TestVerifier
    from verifier.credential.ear import verify_ear
    from verifier.credential.trust import TrustConfig, load_verifier_keys

    v = TestVerifier()
    tok = v.ear().encode()
    trust = TrustConfig(log_keys={}, verifier_keys=load_verifier_keys(v.keys_obj()))

    def rec(ar, **att):
        return {"attestation": {"ar": ar, "ar_digest": {"sha256": hashlib.sha256(tok).hexdigest()},
                                "verifier_id": {"developer": v.developer, "build": v.build}, **att}}

    media = "application/eat+jwt"
    assert verify_ear(rec([media, tok, 8]), trust)[0] is True
    assert verify_ear(rec([media, tok]), trust)[0] is True  # the indicator is optional in a CMW record
    assert verify_ear(rec(None), trust) == (False, None)
    for bad, check in ((rec([media]), "record.ear"), (rec([media, tok.decode()]), "record.ear"),
                       (rec("not a record"), "record.ear"),
                       (rec([media, tok], ar_digest={"sha256": "00" * 32}), "record.ear-digest"),
                       (rec([media, tok], verifier_id={"developer": "https://other.test"}), "record.ear-verifier")):
        with pytest.raises(VerificationError) as e:
            verify_ear(bad, trust)
        assert e.value.check == check
    other_build = TrustConfig(log_keys={}, verifier_keys=[(v.developer, "v9", k) for _, _, k in trust.verifier_keys])
    with pytest.raises(VerificationError) as e:
        verify_ear(rec([media, tok]), other_build)
    assert e.value.check == "record.ear-signature"


def test_attested_artifacts_shape():
    from verifier.credential.ear import attested_artifacts
    from verifier.credential.wire import ATTESTED_ARTIFACTS_CLAIM as A

    good = {"name": "img", "digest": {"sha256": "ab" * 32}}
    assert attested_artifacts({A: [good, good]}) == [good]
    assert attested_artifacts({"submods": {"x": {A: [good]}}}) == [good]
    assert attested_artifacts({}) == []
    for bad in ([], "x", [{"digest": "ab"}], [{"digest": {}}], [{"digest": {"sha256": "AB" * 32}}],
                [{"digest": {"sha256": 5}}], [{"digest": {5: "ab"}}], [{"digest": {"sha256": "zz"}}],
                [{"name": 5, "digest": {"sha256": "ab"}}], ["not a map"]):
        with pytest.raises(VerificationError) as e:
            attested_artifacts({A: bad})
        assert e.value.check == "record.ear", bad


# --- verifier/credential/fetch.py (issue 16 mutation survivors): lookups through a fake getter --

LOG = "http://log.example"


def _fetch_get(pages: dict):
    """A getter over ``pages``: url -> (body, next url) or an OSError to raise; records calls."""
    calls = []

    def get(url, paged=False):
        calls.append(url)
        ans = pages[url]
        if isinstance(ans, OSError):
            raise ans
        return ans if paged else ans[0]
    get.calls = calls
    return get


def _http_error(code):
    from verifier import http as vhttp

    return vhttp.HTTPLimitError(f"HTTP {code}", code)


def test_lookup_pages_and_their_answers():
    from verifier import cbor
    from verifier.credential import fetch

    one, two = cbor.dumps([b"a"]), cbor.dumps([b"b"])
    get = _fetch_get({"u1": (one, "u2"), "u2": (two, None)})
    assert fetch._lookup(get, "u1") == [b"a", b"b"]
    # a 404 means "no record" only on the first page of a lookup that allows it
    assert fetch._lookup(_fetch_get({"u1": _http_error(404)}), "u1", missing_ok=True) == []
    refused = [
        (_fetch_get({"u1": _http_error(404)}), {}),
        (_fetch_get({"u1": _http_error(500)}), {"missing_ok": True}),
        (_fetch_get({"u1": OSError("connection refused")}), {"missing_ok": True}),
        (_fetch_get({"u1": (one, "u2"), "u2": _http_error(404)}), {"missing_ok": True}),
        (_fetch_get({"u1": (cbor.dumps({b"a": 1}), None)}), {}),
        (_fetch_get({"u1": (cbor.dumps([1]), None)}), {}),
        (_fetch_get({"u1": (cbor.dumps(b"a"), None)}), {}),
    ]
    for get, kw in refused:
        with pytest.raises(VerificationError) as e:
            fetch._lookup(get, "u1", **kw)
        assert e.value.check == "fetch.record"


def test_getter_fetches_only_under_the_log():
    """A URL on the log's host but outside its path prefix is refused before any request."""
    from verifier import http as vhttp
    from verifier.credential import fetch

    get = fetch._getter(1.0, "http://127.0.0.1:9/log")
    for url in ("http://127.0.0.1:9/other/x", "http://127.0.0.1:9/logx", "http://127.0.0.2:9/log/x"):
        with pytest.raises(vhttp.HTTPLimitError, match="is not under the log"):
            get(url)


def _record_statement(rec, *, hash_envelope=False) -> bytes:
    from verifier import cbor

    k = ec.generate_private_key(ec.SECP256R1())
    extra = {258: -16} if hash_envelope else {}
    prot = {1: cose.ES256, 4: b"kid", 15: {1: "https://issuer.example", 2: "s"}, **extra}
    if not hash_envelope:
        prot[3] = "application/cbor"
    return cose.sign1(k, prot, cbor.dumps(rec))


def test_linked_provenance_followed_only_under_the_log_entries():
    from verifier.credential import fetch

    wpr = LOG + "/entries/ab"
    links = [{"uri": wpr}, {"uri": LOG + "/other/cd"}, {"uri": 5}, {"uri": "http://evil.example/entries/ef"}, "x"]
    rec = {"workload_provenance": links}
    get = _fetch_get({wpr + "/statement": (b"WPR", None)})
    ts = _record_statement(rec)
    assert fetch._with_linked_wprs(get, [ts], LOG) == [ts, b"WPR"]
    assert get.calls == [wpr + "/statement"]
    # a hash envelope's payload is a digest, not a record: nothing in it is followed
    he = _record_statement(rec, hash_envelope=True)
    get = _fetch_get({})
    assert fetch._with_linked_wprs(get, [he], LOG) == [he] and get.calls == []
    # a record that is not a map links nothing, policies asked or not
    lst = _record_statement([1, 2])
    for pol in (False, True):
        assert fetch._with_linked_wprs(_fetch_get({}), [lst], LOG, policies=pol) == [lst]


def test_fetch_needs_an_http_log():
    from verifier.credential import fetch
    from verifier.credential.parse import CredentialInfo
    from verifier.credential.parse import Pointer as VPointer

    for log in ("ftp://127.0.0.1:9", "127.0.0.1:9"):
        with pytest.raises(VerificationError) as e:
            fetch.fetch_statements(VPointer("rid", log))
        assert e.value.check == "fetch.url"
        info = CredentialInfo("wit", b"x", "https://issuer.example", "spiffe://example.org/w", jti="j")
        with pytest.raises(VerificationError) as e:
            fetch.fetch_external(log, info)
        assert e.value.check == "fetch.url"


# --- verifier/credential/logged_policy.py and parse.py (issue 16 mutation survivors) ----------


def _policy_ts(*, cty="application/vnd.twi.appraisal-policy+toml", sub="pol-1", payload=b"doc = 1",
               iss="https://issuer.example", detached=False):
    from verifier.statement import SignedStatement

    k = ec.generate_private_key(ec.SECP256R1())
    prot = {1: cose.ES256, 4: b"kid", 15: {1: iss, 2: sub}}
    if cty is not None:
        prot[3] = cty
    ts = cose.sign1(k, prot, payload, detached=detached)
    return ts, SignedStatement.parse(ts)


def _rec_for(st, *, entry=None, digest=None, pid="pol-1"):
    import hashlib

    entry = f"{LOG}/entries/{st.leaf_input.hex()}" if entry is None else entry
    ref = {"id": pid, "digest": {"sha256": digest or hashlib.sha256(b"doc = 1").hexdigest()}}
    if entry is not False:
        ref["entry"] = entry
    return {"appraisal": {"policy": ref}}


def test_logged_policy_checks_each_by_name():
    from verifier.credential.logged_policy import check_logged_policies

    ok = lambda ts, st: None  # noqa: E731 (the receipts are checked elsewhere)
    ts, st = _policy_ts()
    assert check_logged_policies(_rec_for(st), "https://issuer.example", [(ts, st)], ok) == {"appraisal": b"doc = 1"}
    cases = [
        (_rec_for(st, entry=False), [(ts, st)], "policy.missing"),
        (_rec_for(st, entry=5), [(ts, st)], "policy.missing"),
        (_rec_for(st, entry=f"{LOG}/other/{st.leaf_input.hex()}"), [(ts, st)], "policy.missing"),
        (_rec_for(st, pid="pol-2"), [(ts, st)], "policy.kind"),
    ]
    for kw, want in (({"cty": "application/vnd.twi.issuance-policy+toml"}, "policy.kind"),
                     ({"cty": None}, "policy.kind"), ({"detached": True}, "policy.digest-mismatch")):
        ts2, st2 = _policy_ts(**kw)
        cases.append((_rec_for(st2), [(ts2, st2)], want))
    for rec, cands, check in cases:
        with pytest.raises(VerificationError) as e:
            check_logged_policies(rec, "https://issuer.example", cands, ok)
        assert e.value.check == check


def test_jwk_thumbprint_needs_the_members_of_a_known_kty():
    from verifier.credential.parse import jwk_thumbprint

    assert jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})
    for jwk in ({"kty": "oct", "k": "AAAA"}, {}, {"kty": "EC", "crv": "P-256", "x": "AAAA"},
                {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": 5}, {"kty": "RSA", "n": "AQAB"}):
        with pytest.raises(VerificationError) as e:
            jwk_thumbprint(jwk)
        assert e.value.check == "credential.cnf"


def test_media_type_by_format():
    from verifier.credential.parse import CredentialInfo
    from verifier.credential.wire import WIT_MEDIA_TYPE, X509_MEDIA_TYPE

    assert CredentialInfo("wit", b"x", "i", "s").media_type == WIT_MEDIA_TYPE
    assert CredentialInfo("x509-svid", b"x", None, "s").media_type == X509_MEDIA_TYPE


def test_cnf_needs_a_jwk_map_with_a_text_alg():
    from verifier.credential.parse import _check_cnf

    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}
    assert "jkt" in _check_cnf({"cnf": {"jwk": jwk | {"alg": "EdDSA"}}})
    for claims in ({}, {"cnf": "x"}, {"cnf": {"jwk": "x"}}, {"cnf": {"jwk": ["x"]}}, {"cnf": {"jwk": jwk}},
                   {"cnf": {"jwk": jwk | {"alg": 5}}}, {"cnf": {"jwk": jwk | {"alg": "none"}}},
                   *({"cnf": {"jwk": jwk | {"alg": a}}} for a in ("HS256", "A128KW", "dir", "RSA-OAEP", "ECDH-ES"))):
        with pytest.raises(VerificationError) as e:
            _check_cnf(claims)
        assert e.value.check == "credential.cnf"


def _wit_token(header=None, claims=None, parts=3) -> str:
    def enc(o):
        return base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()

    h = {"typ": "wit+jwt", "alg": "EdDSA"} if header is None else header
    c = {"sub": "spiffe://example.org/w", "exp": 2000000000, "iss": "https://issuer.example", "jti": "j1",
         "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "alg": "EdDSA"}}} if claims is None else claims
    return ".".join([enc(h), enc(c) if not isinstance(c, str) else c, "sig"][:parts] + ["x"] * (parts - 3))


def _claims(**kw):
    c = {"sub": "spiffe://example.org/w", "exp": 2000000000, "iss": "https://issuer.example", "jti": "j1",
         "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "alg": "EdDSA"}}}
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def test_wit_parse_structure_and_optional_claims():
    """A WIT is three parts with JSON objects; iss and jti may be absent (not null-refused); the
    pointer claim is {rid, log} text members; the cnf key is public (no "d")."""
    from verifier.credential.wire import POINTER_CLAIM

    info = parse_credential(_wit_token())
    assert (info.iss, info.jti) == ("https://issuer.example", "j1")
    info = parse_credential(_wit_token(claims=_claims(iss=None, jti=None)))
    assert (info.iss, info.jti) == (None, None)
    ptr = parse_credential(_wit_token(claims=_claims(**{POINTER_CLAIM: {"rid": "r", "log": "http://l"}}))).pointer
    assert (ptr.rid, ptr.log) == ("r", "http://l")
    bad = [(_wit_token(parts=4), "credential.malformed"), (_wit_token(parts=2), "credential.malformed"),
           (_wit_token(claims=[1, 2]), "credential.malformed"), (_wit_token(claims=_claims(iss=5)), "credential.iss"),
           (_wit_token(claims=_claims(jti=5)), "credential.jti")]
    for p in ("x", {"rid": 5, "log": "http://l"}, {"rid": "r", "log": 5}, {"rid": "r"}):
        bad.append((_wit_token(claims=_claims(**{POINTER_CLAIM: p})), "pointer.claim"))
    jwk = {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "d": "AAAA", "alg": "ES256"}
    bad.append((_wit_token(claims=_claims(cnf={"jwk": jwk})), "credential.cnf"))
    for token, check in bad:
        with pytest.raises(VerificationError) as e:
            parse_credential(token)
        assert e.value.check == check, token


def test_x509_svid_that_is_a_ca_is_refused():
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svid")])

    def cert(ca):
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
             .serial_number(7).not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(hours=1))
             .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org/w")]),
                            critical=False)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return b.sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    assert parse_credential(cert(False)).sub == "spiffe://example.org/w"
    with pytest.raises(VerificationError) as e:
        parse_credential(cert(True))
    assert e.value.check == "credential.ca"


def _cv(record, **kw):
    from verifier.credential.policies import CredentialVerification

    return CredentialVerification(credential=None, record=record, record_statement=None, receipts=[], **kw)


def _policy_check(policy, result):
    try:
        policy.verify(result)
    except VerificationError as e:
        return e.check
    return None


def test_relying_party_policies_at_their_edges():
    from verifier.credential.policies import MaxRecordAge, SbomPresent, StatusAffirming, VerifierIs

    vid = lambda **v: _cv({"attestation": {"verifier_id": v}})  # noqa: E731
    assert _policy_check(VerifierIs("dev", "b1"), vid(developer="dev", build="b1")) is None
    assert _policy_check(VerifierIs("dev", "b1"), vid(developer="dev", build="b2")) == "policy.verifier"
    assert _policy_check(VerifierIs("dev"), vid(developer="dev", build="b2")) is None
    assert _policy_check(VerifierIs("dev"), vid(developer="other")) == "policy.verifier"

    att = lambda a: _cv({"attestation": a})  # noqa: E731
    ok = {"ear_status": "affirming", "submods": {"m": {"ear_status": "affirming"}}}
    assert _policy_check(StatusAffirming(), att(ok)) is None
    assert _policy_check(StatusAffirming(), att({"ear_status": "affirming"})) == "policy.status"  # no submodule

    sbom = "application/vnd.cyclonedx+json"
    wpr = lambda *rds: _cv({}, workload_provenance=[{"predicate": {"composition": list(rds)}}])  # noqa: E731
    assert _policy_check(SbomPresent(), wpr({"mediaType": sbom, "digest": {"sha256": "ab"}})) is None
    assert _policy_check(SbomPresent(), wpr({"mediaType": sbom + "; charset=utf-8", "digest": {"sha256": "ab"}})) is None
    for rd in ({"mediaType": sbom}, {"mediaType": "text/plain", "digest": {"sha256": "ab"}},
               {"mediaType": 5, "digest": {"sha256": "ab"}}):
        assert _policy_check(SbomPresent(), wpr(rd)) == "policy.sbom"

    assert _policy_check(MaxRecordAge(100), _cv({"iat": 900}, now=1000)) is None
    assert _policy_check(MaxRecordAge(100), _cv({"iat": 899}, now=1000)) == "policy.record-age"
    for iat in (None, "900", 900.0):
        assert _policy_check(MaxRecordAge(100), _cv({} if iat is None else {"iat": iat}, now=1000)) == "policy.record-age"


def _encrypt0(plain=b"the record", *, key=bytes(range(32)), rid="rid-1", alg=3, iv=b"\x01" * 12, tag=b"\xd0",
              items=None):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from verifier import cbor

    prot = cbor.dumps({1: alg})
    aad = cbor.dumps(["Encrypt0", prot, rid.encode()])
    ct = AESGCM(key).encrypt(iv, plain, aad)
    arr = items if items is not None else [prot, {5: iv}, ct]
    return tag + cbor.dumps(arr)


def test_decrypt_record_refuses_each_deviation_by_name():
    from verifier.credential import decrypt_record
    from verifier import cbor

    key = bytes(range(32))
    assert decrypt_record(_encrypt0(), key, "rid-1") == b"the record"
    prot = cbor.dumps({1: 3})
    cases = [
        (_encrypt0(tag=b"\xd1"), key, "record.encrypt0"),  # tag 17 is COSE_Mac0
        (_encrypt0(alg=1), key, "record.encrypt0"),  # A128GCM with a 32-byte key is not A256GCM
        (_encrypt0(iv=b"\x01" * 16), key, "record.encrypt0"),
        (_encrypt0(items=[prot, {5: 7}, b"ct"]), key, "record.encrypt0"),
        (_encrypt0(items=[5, {5: b"\x01" * 12}, b"ct"]), key, "record.encrypt0"),
        (_encrypt0(items=[prot, [5], b"ct"]), key, "record.encrypt0"),
        (_encrypt0(items=[prot, {5: b"\x01" * 12}, "ct"]), key, "record.encrypt0"),
        (_encrypt0(key=key[:16]), key[:16], "record.key"),
    ]
    for blob, k, check in cases:
        with pytest.raises(VerificationError) as e:
            decrypt_record(blob, k, "rid-1")
        assert e.value.check == check


def test_classify_hash_envelopes_by_their_preimage_type():
    from types import SimpleNamespace

    from verifier.credential.records import classify
    from verifier.credential.wire import CPR_MEDIA_TYPE, INTOTO_MEDIA_TYPE

    he = lambda cty: SimpleNamespace(content_type=None, hash_envelope=(-16, cty, None))  # noqa: E731
    assert classify(he(CPR_MEDIA_TYPE)) == "cpr"
    assert classify(he(INTOTO_MEDIA_TYPE)) == "wpr"
    assert classify(he("application/other")) is None
    assert classify(SimpleNamespace(content_type="application/other", hash_envelope=None)) is None


def test_decode_record_schema():
    """A Credential Provenance record is a map of the CPR type with rid, credential (a map),
    attestation (a map), issuer and iat: each deviation refused by name, never a crash."""
    from verifier import cbor
    from verifier.credential.records import decode_record
    from verifier.credential.wire import CPR_TYPE

    good = {"type": CPR_TYPE, "rid": "r", "credential": {}, "attestation": {}, "issuer": {}, "iat": 1}
    assert decode_record(cbor.dumps(good)) == good
    cases = [([good], "record.type"), ("x", "record.type"), (good | {"type": "other"}, "record.type"),
             ({k: v for k, v in good.items() if k != "type"}, "record.type")]
    for k in ("rid", "credential", "attestation", "issuer", "iat"):
        cases.append(({x: v for x, v in good.items() if x != k}, "record.schema"))
    for k in ("credential", "attestation"):
        cases.append((good | {k: [1]}, "record.schema"))
    for obj, check in cases:
        with pytest.raises(VerificationError) as e:
            decode_record(cbor.dumps(obj))
        assert e.value.check == check, obj


def test_parse_status_fields():
    from types import SimpleNamespace

    from verifier import cbor
    from verifier.credential.status import parse_status
    from verifier.credential.wire import STATUS_TYPE

    good = {"type": STATUS_TYPE, "rid": "r", "record": {"sha256": "ab"}, "status": "revoked", "time": 5}
    st = lambda p: SimpleNamespace(payload=cbor.dumps(p), iss="https://issuer.example")  # noqa: E731
    assert parse_status(st(good)).rid == "r"
    assert parse_status(st(good | {"reason": "key lost"})).reason == "key lost"
    bad = [[good], {k: v for k, v in good.items() if k != "type"}, good | {"type": "other"},
           good | {"rid": 5}, good | {"record": {"sha256": 5}}, good | {"record": "ab"}, good | {"status": "valid"},
           good | {"time": True}, good | {"time": "5"}, good | {"reason": 5}]
    for p in bad:
        with pytest.raises(VerificationError) as e:
            parse_status(st(p))
        assert e.value.check == "status.malformed", p


def _signed_wit(key, now=1000, lifetime=100, **extra):
    return mint_wit(key, iss="https://issuer.test", sub="spiffe://example.org/w",
                    cnf_jwk=public_jwk(ed25519.Ed25519PrivateKey.generate()), pointer=None, now=now,
                    lifetime=lifetime, extra_claims=extra or None)


def _sig_check(fn, info, trust, now):
    try:
        fn(info, trust, now, True, 0)
    except VerificationError as e:
        return e.check
    return None


def test_wit_signature_time_window_edges():
    """exp is exclusive (expired at exp), nbf inclusive (valid from nbf); no issuer key at all
    is named as such."""
    from verifier import keys as vk
    from verifier.credential.signature import verify_wit_signature
    from verifier.credential.trust import TrustConfig

    key = ec.generate_private_key(ec.SECP256R1())
    trust = TrustConfig(log_keys={}, issuer_keys={vk.thumbprint(key.public_key()): key.public_key()})
    info = _signed_wit(key, now=1000, lifetime=100)
    assert _sig_check(verify_wit_signature, info, trust, 1099) is None
    assert _sig_check(verify_wit_signature, info, trust, 1100) == "credential.expired"
    early = _signed_wit(key, now=1000, lifetime=100, nbf=1010)
    assert _sig_check(verify_wit_signature, early, trust, 1010) is None
    assert _sig_check(verify_wit_signature, early, trust, 1009) == "credential.not-yet-valid"
    past = _signed_wit(key, now=1000, lifetime=100, nbf=990)
    assert _sig_check(verify_wit_signature, past, trust, 1000) is None
    assert _sig_check(verify_wit_signature, info, TrustConfig(log_keys={}), 1050) == "credential.no-issuer-key"


def test_x509_svid_signature_and_validity_edges():
    """The SVID must be signed by the trusted CA's key (a CA name alone is not enough); its
    validity includes notBefore and excludes notAfter; no CA at all is named as such."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from verifier.credential.signature import verify_x509_signature
    from verifier.credential.trust import TrustConfig

    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svid ca")])
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

    def ca_cert(k):
        return (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(k.public_key())
                .serial_number(1).not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(k, hashes.SHA256()))

    ca_key, forger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def svid(signer):
        c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]))
             .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
             .not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(hours=1))
             .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org/w")]),
                            critical=False)
             .sign(signer, hashes.SHA256()))
        return parse_credential(c.public_bytes(serialization.Encoding.DER))

    trust = TrustConfig(log_keys={}, ca_certs=[ca_cert(ca_key)])
    good, forged = svid(ca_key), svid(forger)
    nbf, exp = good.nbf, good.exp
    assert _sig_check(verify_x509_signature, good, trust, nbf) is None
    assert _sig_check(verify_x509_signature, good, trust, exp - 1) is None
    assert _sig_check(verify_x509_signature, good, trust, exp) == "credential.expired"
    assert _sig_check(verify_x509_signature, good, trust, nbf - 1) == "credential.expired"
    assert _sig_check(verify_x509_signature, forged, trust, nbf) == "credential.signature"
    assert _sig_check(verify_x509_signature, good, TrustConfig(log_keys={}), nbf) == "credential.no-ca"
    # a configured CA whose subject name cannot be decoded (invalid UTF-8 in its CN) is refused as
    # malformed where the names are compared, not passed on to a signature check
    der = ca_cert(ca_key).public_bytes(serialization.Encoding.DER)
    broken = x509.load_der_x509_certificate(der.replace(b"\x0c\x07svid ca", b"\x0c\x07svid \xff\xfe"))
    assert _sig_check(verify_x509_signature, good, TrustConfig(log_keys={}, ca_certs=[broken]), nbf) == "credential.malformed"


def test_verifier_keys_are_public_jwks_of_known_types():
    from verifier.credential.trust import load_verifier_keys

    k = ec.generate_private_key(ec.SECP256R1())
    pub = public_jwk(k.public_key())
    assert len(load_verifier_keys({"keys": [pub]})) == 1
    for jwk in (pub | {"d": "AAAA"}, {"kty": "oct", "k": "AAAA"}, {"x": "AAAA"}):
        with pytest.raises(VerificationError) as e:
            load_verifier_keys({"verifiers": [{"id": {"developer": "d"}, "keys": [jwk]}]})
        assert e.value.check == "trust.verifier-keys"


def test_signed_by_needs_the_kid_and_the_signature():
    from verifier import keys as vk
    from verifier.credential.verify import _signed_by
    from verifier.statement import SignedStatement

    k, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    prot = {1: cose.ES256, 15: {1: "https://issuer.example", 2: "s"}}
    st = lambda signer, kid: SignedStatement.parse(cose.sign1(signer, prot | {4: kid}, b"p"))  # noqa: E731
    assert _signed_by(st(k, vk.thumbprint(k.public_key())), k.public_key()) is True
    assert _signed_by(st(k, vk.thumbprint(other.public_key())), k.public_key()) is False  # another kid
    assert _signed_by(st(other, vk.thumbprint(k.public_key())), k.public_key()) is False  # another signer


def test_verified_receipts_need_a_trusted_issuer_key():
    """A statement whose kid names no trusted issuer key is refused ({what}.issuer-key) even
    when its receipts verify: it is never accepted with the issuer signature unchecked."""
    from tests.test_receipt_support import Log
    from tests.test_receipt_support import key as rkey
    from verifier import keys as vk
    from verifier.credential.trust import TrustConfig
    from verifier.credential.verify import verified_receipts
    from verifier.statement import SignedStatement

    log = Log(2)
    ts = log.transparent_statement(1)
    st = SignedStatement.parse(ts)
    pub = rkey("p256", 1).public_key()
    trusted = TrustConfig(log_keys=log.keys(), issuer_keys={vk.thumbprint(pub): pub})
    assert verified_receipts(ts, st, trusted, [], "record")[0].ok
    with pytest.raises(VerificationError) as e:
        verified_receipts(ts, st, TrustConfig(log_keys=log.keys()), [], "record")
    assert e.value.check == "record.issuer-key"


def _logged(stmts):
    """Transparent statements (with a verifying receipt each) of ``stmts``, and the trust."""
    import hashlib

    from tests.test_receipt_support import Log
    from tests.test_receipt_support import key as rkey
    from verifier import keys as vk
    from verifier import merkle
    from verifier.credential.trust import TrustConfig
    from verifier.statement import SignedStatement

    log = Log(1)
    log.statements = list(stmts)
    log.leaf_inputs = [hashlib.sha256(cose.decode_sign1(s).statement_bytes()).digest() for s in stmts]
    log.leaf_hashes = [merkle.leaf_hash(d) for d in log.leaf_inputs]
    pub = rkey("p256", 1).public_key()
    trust = TrustConfig(log_keys=log.keys(), issuer_keys={vk.thumbprint(pub): pub})
    out = [(log.transparent_statement(i), None) for i in range(len(stmts))]
    return [(ts, SignedStatement.parse(ts)) for ts, _ in out], trust


def test_verify_wprs_takes_only_linked_in_toto_statements():
    from tests.test_receipt_support import signed_statement
    from verifier.credential.verify import verify_wprs
    from verifier.credential.wire import INTOTO_STATEMENT_TYPE

    wid = "spiffe://example.org/w"
    doc = {"_type": INTOTO_STATEMENT_TYPE, "predicate": {"workload_id": wid}}
    good = signed_statement(payload=json.dumps(doc).encode(), sub=wid)
    unlinked = signed_statement(payload=json.dumps(doc | {"x": 1}).encode(), sub=wid)
    lst = signed_statement(payload=b"[1]", sub=wid)
    other = signed_statement(payload=json.dumps(doc | {"_type": "other"}).encode(), sub=wid)
    he = signed_statement(payload=bytes(48), sub=wid, extra={3: None, 258: -43, 259: "application/vnd.in-toto+json"})
    stmts, trust = _logged([good, unlinked, lst, other, he])
    link = lambda i: {"workload_provenance": [{"digest": {"sha256": stmts[i][1].leaf_input.hex()}}]}  # noqa: E731
    assert verify_wprs(link(0), stmts, trust, []) == [doc]
    for i, check in ((2, "wpr.payload"), (3, "wpr.payload"), (4, "wpr.hash-alg")):
        with pytest.raises(VerificationError) as e:
            verify_wprs(link(i), stmts, trust, [])
        assert e.value.check == check


def test_external_binding_needs_every_identifier_and_a_public_record():
    """External binding: a record names the credential only by all its identifiers (a WIT
    without iss is named by none); a private record (hash envelope) is not searched, even when
    its payload happens to decode as a record naming the credential."""
    from tests.test_receipt_support import signed_statement
    from verifier import cbor
    from verifier.credential.parse import CredentialInfo
    from verifier.credential.verify import external_candidates
    from verifier.credential.wire import CPR_TYPE

    rec = lambda c: cbor.dumps({"type": CPR_TYPE, "rid": "r", "credential": c, "attestation": {},  # noqa: E731
                                "issuer": {}, "iat": 1})
    full = signed_statement(payload=rec({"iss": "https://i.example", "jti": "j"}), extra={3: "application/cbor"})
    no_iss = signed_statement(payload=rec({"jti": "j"}), extra={3: "application/cbor"})
    private = signed_statement(payload=rec({"iss": "https://i.example", "jti": "j"}),
                               extra={3: None, 258: -16, 259: "application/cbor"})
    stmts, trust = _logged([full, no_iss, private])
    wit = CredentialInfo("wit", b"x", "https://i.example", "spiffe://example.org/w", jti="j")
    assert [st.leaf_input for _, st in external_candidates(wit, stmts[:1], trust, [])] == [stmts[0][1].leaf_input]
    anon = CredentialInfo("wit", b"x", None, "spiffe://example.org/w", jti="j")
    for info, cands in ((anon, stmts[1:2]), (wit, stmts[2:3])):
        with pytest.raises(VerificationError) as e:
            external_candidates(info, cands, trust, [])
        assert e.value.check == "binding.record-missing"


def test_receipt_without_issuer_is_from_no_accepted_log():
    """With accepted logs named, a receipt whose protected CWT claims carry no iss is from none
    of them ({what}.log), never a crash."""
    import hashlib

    from tests.test_receipt_support import LOG_ISSUER, Log, signed_statement
    from tests.test_receipt_support import key as rkey
    from verifier import cbor, merkle, receipt, transparent
    from verifier import keys as vk
    from verifier.credential.trust import TrustConfig
    from verifier.credential.verify import verified_receipts
    from verifier.statement import SignedStatement

    log = Log(1)
    stmt = signed_statement()
    leaf = hashlib.sha256(cose.decode_sign1(stmt).statement_bytes()).digest()
    root = merkle.leaf_hash(leaf)
    pub = rkey("p256", 1).public_key()
    trust = TrustConfig(log_keys=log.keys(), issuer_keys={vk.thumbprint(pub): pub})
    for claims, ok in (({1: LOG_ISSUER, 2: "o", 6: 1}, True), ({2: "o", 6: 1}, False)):
        prot = cbor.dumps({1: log.alg, 4: log.kid, 15: claims, receipt.HDR_VDS: 1})
        sig = cose.sign_tbs(log.priv, log.alg, cose.sig_structure(prot, root))
        rcpt = receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(1, 0, [])])
        ts = transparent.attach_receipts(stmt, [rcpt])
        st = SignedStatement.parse(ts)
        if ok:
            assert verified_receipts(ts, st, trust, [LOG_ISSUER], "record")[0].issuer == LOG_ISSUER
        else:
            with pytest.raises(VerificationError) as e:
                verified_receipts(ts, st, trust, [LOG_ISSUER], "record")
            assert e.value.check == "record.log"


def test_b64url_decode_needs_text_of_the_alphabet():
    from verifier.credential.wire import b64url_decode

    assert b64url_decode("AAEC") == b"\x00\x01\x02"
    for s in (b"AAEC", 5, None, "AA+/", "AA=="):
        with pytest.raises(VerificationError) as e:
            b64url_decode(s)
        assert e.value.check == "encoding.base64url"


@pytest.mark.parametrize("wid", [5, None, b"spiffe://example.org/w", ["spiffe://example.org/w"], ""])
def test_workload_id_must_be_text(wid):
    from verifier.credential.workload_id import validate_workload_id

    with pytest.raises(VerificationError) as e:
        validate_workload_id(wid)
    assert e.value.check == "credential.sub"


def test_workload_id_length_and_scheme_rules():
    """At most 2048 bytes; spiffe:// by the SPIFFE character sets (a trust domain with "_",
    no "~" in a path segment), wimse:// by its own (the reverse)."""
    from verifier.credential.workload_id import validate_workload_id

    head = "spiffe://example.org/"
    assert validate_workload_id(head + "a" * (2048 - len(head)))
    for wid in ("spiffe://my_td/w", "wimse://example.org/a~b"):
        assert validate_workload_id(wid) == wid
    for wid in (head + "a" * (2049 - len(head)), "spiffe://example.org/a~b", "wimse://my_td/w",
                "spiffe://example.org/./w", "wimse://example.org/w/.."):
        with pytest.raises(VerificationError) as e:
            validate_workload_id(wid)
        assert e.value.check == "credential.sub"


def test_wpt_claims_at_their_edges():
    """WIMSE WPT: alg of the WIT's cnf key, integer exp (exclusive), iat not in the future
    (inclusive), non-empty text jti, aud a text or a non-empty array of texts naming the
    audience when one is asked."""
    import jwt

    from verifier.credential.wire import WPT_TYP
    from verifier.credential.wpt import verify_wpt

    wk = ed25519.Ed25519PrivateKey.generate()
    issuer = ec.generate_private_key(ec.SECP256R1())
    info = mint_wit(issuer, iss="https://issuer.test", sub="spiffe://example.org/w",
                    cnf_jwk=public_jwk(wk, alg="EdDSA"), pointer=None, now=1000, lifetime=1000)
    import hashlib as _h

    from verifier.credential.wire import b64url
    wth = b64url(_h.sha256(info.raw).digest())
    base = {"wth": wth, "exp": 1100, "iat": 1000, "jti": "j", "aud": "https://rp.example"}

    def wpt(claims, key=wk, alg="EdDSA"):
        return jwt.encode(claims, key, algorithm=alg, headers={"typ": WPT_TYP})

    def check(claims, now=1000, audience=None, **kw):
        try:
            verify_wpt(wpt(claims, **kw), info, now=now, audience=audience, leeway=0)
        except VerificationError as e:
            return e.check
        return None

    assert check(base) is None
    assert check(base, now=1099) is None and check(base, now=1100) == "wpt.expired"
    assert check(base | {"iat": 1000}, now=1000) is None and check(base | {"iat": 1001}) == "wpt.iat"
    assert check(base | {"iat": "x"}) is None  # a non-integer iat is no time to judge
    assert check(base | {"iat": True}, now=0) is None  # nor is a bool (not 1 s after the epoch)
    assert check(base | {"aud": ["a", "https://rp.example"]}, audience="https://rp.example") is None
    assert check(base | {"aud": ["a"]}) is None
    assert check(base | {"aud": ["a"]}, audience="https://rp.example") == "wpt.aud"
    assert check(base, key=ec.generate_private_key(ec.SECP256R1()), alg="ES256") == "wpt.alg"
    for hdr in ({"typ": WPT_TYP}, {"typ": WPT_TYP, "alg": 5}):  # no alg, or not a text: wpt.alg, no crash
        raw = ".".join(b64url(json.dumps(x).encode()) for x in (hdr, base)) + ".c2ln"
        with pytest.raises(VerificationError) as e:
            verify_wpt(raw, info, now=1000, leeway=0)
        assert e.value.check == "wpt.alg"
    for claims, want in (({"exp": True}, "wpt.exp"), ({"exp": None}, "wpt.exp"), ({"exp": "1100"}, "wpt.exp"),
                         ({"jti": None}, "wpt.jti"), ({"jti": ""}, "wpt.jti"),
                         ({"aud": None}, "wpt.aud"), ({"aud": []}, "wpt.aud"), ({"aud": [1]}, "wpt.aud"),
                         ({"aud": {"https://rp.example": 1}}, "wpt.aud")):
        c = {k: v for k, v in (base | claims).items() if v is not None}
        assert check(c) == want, claims
