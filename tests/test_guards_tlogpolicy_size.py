"""The log's size bound (tlog.policy.Policy.check) is inclusive, like the monitor's
(verifier.policy, tests/test_guards_policy_eval.py): a statement of exactly max_statement_size
bytes is admitted, one byte more is refused (issue 16: a survivor of the final mutation run)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.keys import TrustStore
from tlog.policy import Policy, Rejection
from verifier import cose
from verifier import keys as vkeys
from verifier.statement import SignedStatement

from .test_receipt_support import signed_statement

ISS = "https://issuer.example"


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _policy(key, size) -> Policy:
    kid = vkeys.thumbprint(key.public_key())
    trust = TrustStore(issuer_keys={kid: key.public_key()}, key_identities={kid: [ISS]})
    return Policy(trust=trust, allowed_algs=[cose.ES256], allowed_content_types=[], max_statement_size=size)


def test_the_log_s_size_bound_is_inclusive(key):
    st = SignedStatement.parse(signed_statement(key, b"payload of some size", iss=ISS))
    n = len(st.statement_bytes)
    _policy(key, n).check(st)  # exactly the bound: admitted
    with pytest.raises(Rejection) as r:
        _policy(key, n - 1).check(st)
    assert "large" in r.value.reason or "size" in r.value.reason
