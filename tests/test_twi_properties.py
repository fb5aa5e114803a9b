"""Property tests: no single-byte change to a credential or its transparent provenance
statement is accepted; pointer encoding and workload identifier validation round-trip."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier import VerificationError
from verifier.credential import Pointer, decode_pointer_ext, encode_pointer_ext, validate_workload_id, verify_credential

from .test_twi_support import bound, trust_for, twi_env, wpr_statement  # noqa: F401

WID = "spiffe://prod.test/payments"


@pytest.fixture(params=["wit", "x509-svid"])
def issued(twi_env, request):
    _, reg = twi_env.issuer.register_workload_provenance(wpr_statement(twi_env))
    out = twi_env.issuer.issue(**bound(twi_env.verifier, twi_env.workload_key), workload_id=WID, fmt=request.param)
    stmts = [out.registration.transparent_statement, reg.transparent_statement]
    trust = trust_for(twi_env)
    verify_credential(out.credential.raw, stmts, trust)  # the unmodified pair verifies
    return out.credential.raw, stmts, trust


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    pos %= len(data)
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1:]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0, max_value=1 << 16), mask=st.integers(min_value=1, max_value=255))
def test_any_byte_of_the_record_statement(issued, pos, mask):
    cred, stmts, trust = issued
    with pytest.raises(VerificationError):
        verify_credential(cred, [_flip(stmts[0], pos, mask)] + stmts[1:], trust)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0, max_value=1 << 16), mask=st.integers(min_value=1, max_value=255))
def test_any_byte_of_the_credential(issued, pos, mask):
    cred, stmts, trust = issued
    with pytest.raises(VerificationError):
        verify_credential(_flip(cred, pos, mask), stmts, trust)


@given(log=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300),
       rid=st.text(max_size=300))
def test_pointer_extension_roundtrip(log, rid):
    assert decode_pointer_ext(encode_pointer_ext(log, rid)) == (log, rid)


@given(td=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True),
       segs=st.lists(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,12}", fullmatch=True), min_size=1, max_size=5))
def test_spiffe_ids(td, segs):
    wid = f"spiffe://{td}/" + "/".join(segs)
    if any(s in (".", "..") for s in segs):
        with pytest.raises(VerificationError):
            validate_workload_id(wid)
    else:
        assert validate_workload_id(wid) == wid
        with pytest.raises(VerificationError):
            validate_workload_id(wid + "/")
        with pytest.raises(VerificationError):
            validate_workload_id(wid + "?q")


def test_pointer_locator():
    assert Pointer("urn:uuid:1", "https://log.example/").uri == "https://log.example/twi/v1/cpr?rid=urn%3Auuid%3A1"
