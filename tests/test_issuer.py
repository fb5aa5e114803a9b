"""Issuer: credential minting, provenance records, private records, SCRAPI client, pipeline."""

from __future__ import annotations

import hashlib
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from issuer import IssuerError
from issuer.appraisal import AppraisalPolicy, VerifierKeys, appraise
from issuer.client import ScrapiClient
from issuer.credentials import make_ca, mint_wit, mint_x509_svid, new_record_id, public_jwk, spki_der
from issuer.provenance import (IssuerIdentity, RecordVault, build_cpr, encode_cpr, record_key, sbom_descriptor,
                               sign_cpr, sign_workload_provenance, slsa_descriptor)
from issuer.service import IssuancePolicy
from verifier import VerificationError
from verifier import cbor as vcbor
from verifier import keys as vkeys
from verifier.credential import (CPR_MEDIA_TYPE, POINTER_CLAIM, POINTER_OID, Pointer, decrypt_record,
                                 parse_credential)
from verifier.statement import SignedStatement

from .test_twi_support import LOG_URL, FlaskSession, bound, TestVerifier, policy_obj, trust_for, twi_env, wpr_statement  # noqa: F401

WID = "spiffe://prod.test/payments"


@pytest.fixture(scope="module")
def ikey():
    return ec.generate_private_key(ec.SECP256R1())


def ptr():
    return Pointer(new_record_id(), LOG_URL)


def test_wit_shape(ikey):
    wk = ed25519.Ed25519PrivateKey.generate()
    p = ptr()
    c = mint_wit(ikey, iss="https://issuer.test", sub=WID, cnf_jwk=public_jwk(wk), pointer=p, lifetime=600, now=1_800_000_000)
    tok = c.raw.decode()
    hdr = jwt.get_unverified_header(tok)
    assert hdr["typ"] == "wit+jwt" and hdr["alg"] == "ES256"
    assert jwt.utils.base64url_decode(hdr["kid"]) == vkeys.thumbprint(ikey)
    claims = jwt.decode(tok, ikey.public_key(), algorithms=["ES256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == WID and claims["exp"] == 1_800_000_600 and len(claims["jti"]) >= 22
    assert claims["cnf"]["jwk"]["alg"] == "EdDSA" and claims["cnf"]["jwk"]["kty"] == "OKP"
    assert claims[POINTER_CLAIM] == {"rid": p.rid, "log": LOG_URL}
    assert "aud" not in claims
    assert c.sha256 == hashlib.sha256(tok.encode()).hexdigest()


@pytest.mark.parametrize("bad", ["https://prod.test/x", "spiffe://prod.test", "spiffe://Prod.test/x",
                                 "wimse://prod.test:443/x", "spiffe://prod.test/x?y=1", "wimse://u@prod.test/x"])
def test_bad_workload_identifiers_refused(ikey, bad):
    with pytest.raises(IssuerError) as ei:
        mint_wit(ikey, iss="https://issuer.test", sub=bad, cnf_jwk={"kty": "OKP", "crv": "Ed25519", "x": "AA", "alg": "EdDSA"},
                 pointer=ptr())
    assert ei.value.check == "credential.sub"


def test_x509_svid_shape(ikey):
    ca = make_ca(ikey)
    wk = ec.generate_private_key(ec.SECP256R1())
    p = ptr()
    c = mint_x509_svid(ikey, ca, sub=WID, public_key=wk.public_key(), pointer=p)
    cert = x509.load_der_x509_certificate(c.raw)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [WID]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(POINTER_OID))
    assert not ext.critical
    assert c.pointer == p and c.serial == format(cert.serial_number, "x")
    cert.verify_directly_issued_by(ca)
    assert c.cnf == {"spki_sha256": hashlib.sha256(spki_der(wk.public_key())).hexdigest()}


def test_x509_two_uri_sans_rejected_by_parser(ikey):
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    ca = make_ca(ikey)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
            .public_key(ikey.public_key()).serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(WID),
                                                        x509.UniformResourceIdentifier(WID + "2")]), critical=True)
            .sign(ikey, hashes.SHA256()))
    with pytest.raises(VerificationError) as ei:
        parse_credential(cert.public_bytes(serialization.Encoding.DER))
    assert ei.value.check == "credential.san"


def _appraisal():
    v = TestVerifier()
    return appraise(v.ear(nonce="bg"), AppraisalPolicy.from_obj(policy_obj()), VerifierKeys.from_obj(v.keys_obj()),
                    nonce="bg")


def test_cpr_public_and_private_statements(ikey):
    ident = IssuerIdentity("https://issuer.test", ikey)
    p = ptr()
    cred = mint_wit(ikey, iss=ident.id, sub=WID, cnf_jwk=public_jwk(ed25519.Ed25519PrivateKey.generate()), pointer=p)
    a = _appraisal()
    ip = IssuancePolicy.from_obj({"id": "urn:issuance:1"})
    rec = build_cpr(rid=p.rid, credential=cred, appraisal=a, issuer_id=ident.id, issuance_policy_id=ip.id,
                    issuance_policy_digest=ip.digest, iat=1_800_000_000)
    assert rec["credential"]["digest"] == {"sha256": cred.sha256}
    assert rec["credential"]["jti"] == cred.jti and rec["rid"] == p.rid
    assert rec["attestation"]["ar_digest"] == {"sha256": a.ear_sha256}
    assert rec["attestation"]["ar"][0].startswith("application/eat+jwt") and rec["attestation"]["ar"][2] == 8
    assert rec["appraisal"]["policy"] == {"id": a.policy_id, "digest": {"sha256": a.policy_digest}}
    assert rec["issuer"]["policy"]["digest"] == {"sha256": ip.digest}
    data = encode_cpr(rec)
    assert vcbor.dumps(vcbor.loads(data)) == data  # deterministic
    pub = SignedStatement.parse(sign_cpr(ident, data, rid=p.rid, sub=WID, iat=1))
    assert pub.content_type == CPR_MEDIA_TYPE and pub.kid == vkeys.thumbprint(ikey) and pub.payload == data
    assert pub.sub == WID and pub.cwt_claims[7] == p.rid.encode()
    pub.verify(ikey.public_key())
    priv = SignedStatement.parse(sign_cpr(ident, data, rid=p.rid, sub=WID, iat=1, private_location="https://issuer.test/records/x"))
    assert 3 not in priv.sign1.protected and priv.sign1.protected[258] == -16
    assert priv.hash_envelope[1] == CPR_MEDIA_TYPE and priv.payload == hashlib.sha256(data).digest()
    assert priv.sub == p.rid  # opaque subject for private records
    # a record for a credential that does not point at it is refused
    with pytest.raises(IssuerError):
        build_cpr(rid=new_record_id(), credential=cred, appraisal=a, issuer_id=ident.id, issuance_policy_id=ip.id,
                  issuance_policy_digest=ip.digest)


def test_vault_roundtrip_and_tamper(tmp_path):
    v = RecordVault(tmp_path, b"\x01" * 32)
    rid = new_record_id()
    v.put(rid, b"the record")
    assert v.get(rid) == b"the record"
    blob = v.path(rid).read_bytes()
    k = record_key(b"\x01" * 32, rid)
    assert decrypt_record(blob, k, rid) == b"the record"      # an auditor with the record key
    for bad in [(blob, k, new_record_id()), (blob, record_key(b"\x02" * 32, rid), rid),
                (blob[:-1] + bytes([blob[-1] ^ 1]), k, rid)]:
        with pytest.raises(VerificationError) as ei:
            decrypt_record(*bad)
        assert ei.value.check == "record.decrypt"
    assert b"the record" not in blob


def test_descriptors():
    cdx = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}).encode()
    assert sbom_descriptor(cdx)["mediaType"] == "application/vnd.cyclonedx+json; version=1.6"
    spdx = json.dumps({"spdxVersion": "SPDX-2.3"}).encode()
    assert sbom_descriptor(spdx) == {"digest": {"sha256": hashlib.sha256(spdx).hexdigest()}, "mediaType": "application/spdx+json"}
    with pytest.raises(IssuerError):
        sbom_descriptor(b'{"hello": 1}')
    slsa = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1"}).encode()
    assert slsa_descriptor(slsa)["annotations"] == {"predicateType": "https://slsa.dev/provenance/v1"}
    with pytest.raises(IssuerError):
        slsa_descriptor(b'{"predicateType": "x"}')


# ---- client and pipeline against the real log app (in process) --------------------------------


def test_client_retries_503_and_429_honouring_retry_after(twi_env):
    env = twi_env
    sleeps = []
    env.session.fail_first = [503, 429]
    env.session.retry_after = "2"
    c = ScrapiClient(LOG_URL, session=env.session, sleep=sleeps.append, log_keys=env.log_keys)
    ref, reg = env.issuer.register_workload_provenance(wpr_statement(env))  # uses env.client (fails fast? no: queue empty)
    assert reg.index is not None
    st = sign_workload_provenance(env.issuer.identity, wpr_statement(env), iat=5)
    env.session.fail_first = [503, 429]
    r = c.register(st)
    assert sleeps == [2.0, 2.0]
    assert [s for _, _, s in env.session.calls[-3:]] == [503, 429, 201]
    assert r.transparent_statement.startswith(b"\xd2") and r.entry_url.startswith(LOG_URL + "/entries/")


def test_client_is_bounded(twi_env):
    env = twi_env
    env.session.fail_first = [503] * 50
    c = ScrapiClient(LOG_URL, session=env.session, sleep=lambda s: None, max_attempts=4, log_keys=env.log_keys)
    with pytest.raises(IssuerError) as ei:
        c.register(sign_workload_provenance(env.issuer.identity, wpr_statement(env)))
    assert ei.value.check == "client.unavailable"
    assert len(env.session.calls) == 4


def test_client_rejection_carries_problem_details(twi_env):
    env = twi_env
    stranger = IssuerIdentity("https://stranger.test", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(IssuerError) as ei:
        env.client.register(sign_workload_provenance(stranger, wpr_statement(env)))
    assert ei.value.check == "client.rejected" and "400" in ei.value.detail and "not trusted" in ei.value.detail


def test_client_303_then_polling(tmp_path):
    """register_wait=0: the log answers 303 and 302 until integrated; the client polls."""
    from tlog.config import Config
    from tlog.server import create_app

    from .test_twi_support import write_pem_public
    k = ec.generate_private_key(ec.SECP256R1())
    app = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(tmp_path / "log"), issuer_keys=[{"path": str(write_pem_public(tmp_path / "k.pem", k)), "iss": ["https://issuer.test"]}],
        origin="log.test/poll", issuer=LOG_URL, register_wait=0.0, max_wait=0.2)))
    try:
        sess = FlaskSession(app)
        import time as _t
        c = ScrapiClient(LOG_URL, session=sess, sleep=lambda s: _t.sleep(min(s, 0.05)), max_backoff=0.05)
        r = c.register(sign_workload_provenance(IssuerIdentity("https://issuer.test", k), {
            "_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "a", "digest": {"sha256": "00" * 32}}],
            "predicateType": "x", "predicate": {"workload_id": WID}}))
        assert sess.calls[0][2] == 303
        polls = [s for m, path, s in sess.calls[1:] if m == "GET" and path.startswith("/entries/")]
        assert polls and polls[-1] == 200 and set(polls[:-1]) <= {302, 202}
        assert r.receipt and r.transparent_statement
    finally:
        app.extensions["tlog.service"].close()


def test_issue_pipeline_and_refusals(twi_env):
    env = twi_env
    wk = env.workload_key.public_key()
    out = env.issuer.issue(**bound(env.verifier, wk), workload_id=WID)
    assert out.credential.pointer.rid == out.rid and out.registration.transparent_statement
    n = len(env.session.calls)
    for args, check in [(bound(env.verifier, wk, status="contraindicated"), "appraisal.status"),
                        (bound(env.verifier, wk, iat=1_600_000_000), "appraisal.expired"),
                        (bound(TestVerifier(developer="https://rogue.test"), wk), "appraisal.verifier-unknown"),
                        (bound(TestVerifier(), wk), "appraisal.signature"),
                        ({**bound(env.verifier, wk), "nonce": None}, "appraisal.nonce"),   # safe default
                        ({**bound(env.verifier, wk), "nonce": "b3RoZXI"}, "appraisal.nonce"),
                        (bound(env.verifier, wk, akpub=None), "issuance.key-binding")]:   # safe default
        with pytest.raises(IssuerError) as ei:
            env.issuer.issue(**args, workload_id=WID)
        assert ei.value.check == check
    assert len(env.session.calls) == n  # nothing was registered, no credential minted


def test_unregistered_provenance_means_no_credential(twi_env):
    env = twi_env
    env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i", "private_records": True})
    env.issuer.ensure_policies()  # the policies are in the log; the record's registration fails
    env.session.fail_first = [503] * 100
    env.client.max_attempts = 3
    with pytest.raises(IssuerError) as ei:
        env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert ei.value.check == "issuance.unregistered"
    assert list((env.tmp / "vault").iterdir()) == []  # the private record was discarded too


def test_issuance_policy(twi_env):
    env = twi_env
    env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i", "trust_domains": ["other.test"]})
    with pytest.raises(IssuerError) as ei:
        env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert ei.value.check == "issuance.trust-domain"
    env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i", "require_workload_provenance": True})
    with pytest.raises(IssuerError) as ei:
        env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert ei.value.check == "issuance.workload-provenance"
    env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i"})
    assert env.issuer.issuance_policy.bind_attested_key is True  # safe default
    wk = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IssuerError) as ei:  # EAR attests a different key
        env.issuer.issue(**bound(env.verifier, wk, akpub=spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())),
                         workload_id=WID)
    assert ei.value.check == "issuance.key-binding"
    out = env.issuer.issue(**bound(env.verifier, wk), workload_id=WID, fmt="x509-svid")
    assert out.credential.format == "x509-svid"
    # an operator who cannot attest keys says so in the policy
    env.issuer.issuance_policy = IssuancePolicy.from_obj({"id": "urn:i", "bind_attested_key": False})
    env.issuer.issue(**bound(env.verifier, wk, akpub=None), workload_id=WID)


def test_policies_logged_before_use(twi_env):
    """Policies reach the log before the first credential under them; a log that cannot take
    them means no credential; each document is registered once."""
    env = twi_env
    env.session.fail_first = [503] * 100
    env.client.max_attempts = 2
    with pytest.raises(IssuerError) as ei:
        env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert ei.value.check == "issuance.policy-unregistered"
    env.session.fail_first = []
    n = len(env.session.calls)
    out = env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert out.record["appraisal"]["policy"]["entry"] and out.record["issuer"]["policy"]["entry"]
    assert len([c for c in env.session.calls[n:] if c[0] == "POST"]) == 3  # two policies and the record
    env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID)
    assert len([c for c in env.session.calls[n:] if c[0] == "POST"]) == 4  # the record only
