"""TWI guards that once survived mutation testing (issue 16): each test fails when the check it
names is removed (tried by hand; `tools/mutate.py` re-checks them)."""

from __future__ import annotations

import pytest

from issuer import IssuerError
from issuer.client import ScrapiClient
from issuer.provenance import sign_workload_provenance
from verifier import VerificationError, cose
from verifier.credential import verify_credential

from .test_twi_support import LOG_URL, FlaskSession, bound, trust_for, twi_env, wpr_statement  # noqa: F401

WID = "spiffe://prod.test/payments"


def issue(env, *, fmt="wit", wpr=True):
    reg = None
    if wpr:
        _, reg = env.issuer.register_workload_provenance(wpr_statement(env))
    out = env.issuer.issue(**bound(env.verifier, env.workload_key), workload_id=WID, fmt=fmt)
    return out, [out.registration.transparent_statement] + ([reg.transparent_statement] if reg else [])


def fails(check, *a, **kw):
    with pytest.raises(VerificationError) as ei:
        verify_credential(*a, **kw)
    assert ei.value.check == check, str(ei.value)


def _without_receipts(ts: bytes) -> bytes:
    m = cose.decode_sign1(ts)
    return cose.encode_sign1(m.protected_raw, {}, m.payload, m.signature)


def test_record_id_compared_with_the_pointer(twi_env, monkeypatch):
    """The issuer's signed record says it is record B, while its statement (cti) and its copy of
    the pointer say A, the id the credential points at: the record's own id decides."""
    import issuer.service as service

    real = service.build_cpr

    def other_rid(**kw):
        rec = real(**kw)
        rec["rid"] = "0" * len(rec["rid"])
        return rec

    monkeypatch.setattr(service, "build_cpr", other_rid)
    out, stmts = issue(twi_env, wpr=False)
    fails("binding.record-id", out.credential.raw, stmts, trust_for(twi_env))


def test_x509_svid_outside_its_validity(twi_env):
    out, stmts = issue(twi_env, fmt="x509-svid", wpr=False)
    trust = trust_for(twi_env)
    verify_credential(out.credential.raw, stmts, trust)
    fails("credential.expired", out.credential.raw, stmts, trust, now=out.credential.exp + 3600)
    fails("credential.expired", out.credential.raw, stmts, trust, now=out.credential.nbf - 3600)
    verify_credential(out.credential.raw, stmts, trust, now=out.credential.exp + 3600, check_time=False)


def test_workload_provenance_needs_its_receipt(twi_env):
    """The record links a Workload Provenance statement; a copy without a (valid) receipt is
    never used as provenance, whatever its digest."""
    out, stmts = issue(twi_env)
    assert len(verify_credential(out.credential.raw, stmts, trust_for(twi_env)).workload_provenance) == 1
    fails("wpr.receipt", out.credential.raw, [stmts[0], _without_receipts(stmts[1])], trust_for(twi_env))


class _TamperingSession(FlaskSession):
    """The log answers with a receipt whose signature is broken (or for another statement)."""

    def __init__(self, app, mode: str):
        super().__init__(app)
        self.mode, self.first = mode, None

    def request(self, method, url, **kw):
        r = super().request(method, url, **kw)
        if method == "POST" and r.status_code == 201:
            if self.mode == "flip":
                r._content = r._content[:-1] + bytes([r._content[-1] ^ 1])
            elif self.first is None:
                self.first = r._content
            else:
                r._content = self.first
        return r


@pytest.mark.parametrize("mode", ["flip", "replay"])
@pytest.mark.parametrize("pinned", [True, False])
def test_issuer_client_refuses_a_receipt_that_does_not_verify(twi_env, mode, pinned):
    env = twi_env
    session = _TamperingSession(env.app, mode)
    c = ScrapiClient(LOG_URL, session=session, sleep=lambda s: None, log_keys=env.log_keys if pinned else None)
    if mode == "replay":
        c.register(sign_workload_provenance(env.issuer.identity, wpr_statement(env), iat=1))
    with pytest.raises(IssuerError) as ei:
        c.register(sign_workload_provenance(env.issuer.identity, wpr_statement(env), iat=2))
    assert ei.value.check == "client.receipt"



def test_issuer_client_takes_keys_only_from_a_200():
    """A key set in the body of an error answer is not the log's key set."""
    import requests

    from tests.test_receipt_support import key
    from verifier import keys as vkeys

    body = vkeys.encode_keyset([vkeys.cose_key_from_public(key("p256", 2).public_key())])

    class Session:
        def __init__(self, status):
            self.status = status

        def request(self, method, url, **kw):
            r = requests.Response()
            r.status_code, r._content, r.url = self.status, body, url
            return r

    assert len(ScrapiClient(LOG_URL, session=Session(200)).keys()) == 1
    for status in (404, 400, 302):
        with pytest.raises(IssuerError) as ei:
            ScrapiClient(LOG_URL, session=Session(status), sleep=lambda s: None).keys()
        assert ei.value.check == "client.keys"
