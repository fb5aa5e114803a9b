"""Library entry points of verifier/ that nothing in the log or issuer calls, so no other test ran
them: cbor.loads_span, the WorkloadIs relying-party policy, status.is_status (issue 16)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from verifier import cbor
from verifier.credential import WorkloadIs
from verifier.credential.policies import CredentialVerification
from verifier.credential.status import is_status
from verifier.credential.wire import STATUS_MEDIA_TYPE
from verifier.errors import VerificationError


def test_loads_span_decodes_exactly_its_span_and_refuses_trailing_bytes():
    item = cbor.dumps({"a": [1, 2]})
    data = b"\xff\xff" + item + b"\x01\x02"
    start, end = 2, 2 + len(item)
    assert cbor.loads_span(data, start, end) == {"a": [1, 2]}
    # a span one byte longer holds the item and a trailing byte: refused, never silently cut
    with pytest.raises(VerificationError) as e:
        cbor.loads_span(data, start, end + 1)
    assert e.value.check == "cbor.trailing-bytes"
    with pytest.raises(VerificationError) as e:
        cbor.loads_span(cbor.dumps(1) + cbor.dumps(2), 0, 2)
    assert e.value.check == "cbor.trailing-bytes"


def _result(sub: str) -> CredentialVerification:
    return CredentialVerification(credential=SimpleNamespace(sub=sub), record={}, record_statement=None, receipts=[])


def _check(policy, sub):
    try:
        policy.verify(_result(sub))
    except VerificationError as e:
        return e.check
    return None


def test_workload_is_matches_exactly_unless_prefix():
    wid = "spiffe://example.org/payments"
    assert _check(WorkloadIs(wid), wid) is None
    assert _check(WorkloadIs(wid), "spiffe://example.org/other") == "policy.workload"
    # an exact policy does not accept a longer identifier that merely starts with it
    assert _check(WorkloadIs(wid), wid + "-admin") == "policy.workload"
    td = "spiffe://example.org/"
    assert _check(WorkloadIs(td, prefix=True), wid) is None
    assert _check(WorkloadIs(td, prefix=True), "spiffe://evil.example/payments") == "policy.workload"
    assert _check(WorkloadIs(td), wid) == "policy.workload"


def test_is_status_tells_status_statements_by_content_type():
    assert is_status(SimpleNamespace(content_type=STATUS_MEDIA_TYPE)) is True
    assert is_status(SimpleNamespace(content_type="application/vnd.twi.cpr+cbor")) is False
    assert is_status(SimpleNamespace(content_type=None)) is False
