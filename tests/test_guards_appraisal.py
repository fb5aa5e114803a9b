"""Appraisal guards found unchecked by mutation testing (issue 16): each case is refused with
its own check, not accepted and not a crash."""

from __future__ import annotations

import time

import jwt
import pytest

from issuer import IssuerError
from issuer.appraisal import AppraisalPolicy, SubmodRule, VerifierKeys, appraise

from .test_twi_support import VERIFIER_BUILD, VERIFIER_DEV, TestVerifier, policy_obj


@pytest.fixture(scope="module")
def ver():
    return TestVerifier()


def _claims(**over):
    c = {"eat_profile": "tag:ietf.org,2026:rats/ear#03", "iat": int(time.time()),
         "ear_verifier_id": {"developer": VERIFIER_DEV, "build": VERIFIER_BUILD},
         "submods": {"cc-tee": {"ear_status": "affirming",
                                "ear_trustworthiness_vector": {"instance-identity": 2, "executables": 2, "hardware": 2},
                                "ear_appraisal_policy_ids": ["https://verifier.test/policy/1"]}}}
    c.update(over)
    return c


def _policy(**over):
    return AppraisalPolicy.from_obj(policy_obj(require_nonce=False, **over))


def _refused(check, token, policy, keys):
    with pytest.raises(IssuerError) as ei:
        appraise(token, policy, keys)
    assert ei.value.check == check, str(ei.value)


def test_baseline_accepted(ver):
    tok = jwt.encode(_claims(), ver.key, algorithm="ES256", headers={"typ": "JWT"})
    assert appraise(tok, _policy(), VerifierKeys.from_obj(ver.keys_obj())).status == "affirming"


@pytest.mark.parametrize("headers,claims,check", [
    ({"typ": "text/plain"}, {}, "appraisal.typ"),
    ({}, {"ear_verifier_id": ["not", "a map"]}, "appraisal.verifier-id"),
    ({}, {"ear_verifier_id": {"developer": 7}}, "appraisal.verifier-id"),
    ({}, {"submods": {"cc-tee": {"ear_status": ["affirming"]}}}, "appraisal.status"),
    ({}, {"submods": {"cc-tee": {"ear_status": 5}}}, "appraisal.status"),
    ({}, {"submods": {"cc-tee": {"ear_status": True}}}, "appraisal.status"),
    ({}, {"submods": {"cc-tee": {"ear_status": 2.0}}}, "appraisal.status"),
    ({}, {"submods": {"cc-tee": {"ear_status": "affirming", "ear_trustworthiness_vector": [2, 2]}}},
     "appraisal.trust-vector"),
])
def test_malformed_ears_refused(ver, headers, claims, check):
    tok = jwt.encode(_claims(**claims), ver.key, algorithm="ES256", headers={"typ": "JWT", **headers})
    _refused(check, tok, _policy(submods={"*": {"status": "affirming"}}), VerifierKeys.from_obj(ver.keys_obj()))


def test_verifier_key_speaks_only_for_its_build(ver):
    """The key is configured for build v1; an EAR it signed claiming build v2 is not its to sign
    (the policy itself allows any build of the developer)."""
    tok = jwt.encode(_claims(ear_verifier_id={"developer": VERIFIER_DEV, "build": "v2"}), ver.key,
                     algorithm="ES256", headers={"typ": "JWT"})
    _refused("appraisal.verifier-unknown", tok, _policy(), VerifierKeys.from_obj(ver.keys_obj()))


@pytest.mark.parametrize("rule", [
    {"status": "contraindicated"},
    {"status": "none"},
    {"trust_vector": {"hardware": ["affirming"]}},
    {"trust_vector": {"hardware": []}},
    {"trust_vector": {"hardware": "contraindicated"}},
    {"trust_vector": {"no-such-claim": "affirming"}},
])
def test_submodule_rules_validated(rule):
    with pytest.raises(IssuerError) as ei:
        SubmodRule.from_obj(rule)
    assert ei.value.check == "appraisal.policy"


@pytest.mark.parametrize("av", [None, [], [{"build": "x"}], [{"developer": 5}], ["https://verifier.test"]])
def test_allowed_verifiers_validated(av):
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.from_obj(policy_obj(allowed_verifiers=av))
    assert ei.value.check == "appraisal.policy"


@pytest.mark.parametrize("pid", [None, "", 5])
def test_policy_id_must_be_text(pid):
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.from_obj(policy_obj(id=pid))
    assert ei.value.check == "appraisal.policy"


def test_optional_nonce(ver):
    """require_nonce false: an EAR without eat_nonce is accepted whatever challenge the caller
    has; an EAR with another nonce than the challenge is refused."""
    keys = VerifierKeys.from_obj(ver.keys_obj())
    bare = jwt.encode(_claims(), ver.key, algorithm="ES256", headers={"typ": "JWT"})
    assert appraise(bare, _policy(), keys, nonce="challenge-1").nonce is None
    other = jwt.encode(_claims(eat_nonce="challenge-2"), ver.key, algorithm="ES256", headers={"typ": "JWT"})
    with pytest.raises(IssuerError) as ei:
        appraise(other, _policy(), keys, nonce="challenge-1")
    assert ei.value.check == "appraisal.nonce"
    assert appraise(other, _policy(), keys, nonce="challenge-2").nonce == "challenge-2"


def test_lenient_mode_accepts_float_times_only(ver):
    """lenient: float iat/exp/nbf are accepted; text is not a time in any mode."""
    keys = VerifierKeys.from_obj(ver.keys_obj())
    now = time.time()
    lenient = _policy(lenient=True)
    assert appraise(jwt.encode(_claims(iat=now, exp=now + 60.5), ver.key, algorithm="ES256"), lenient, keys)
    for name in ("exp", "nbf"):
        tok = jwt.encode(_claims(**{name: "soon"}), ver.key, algorithm="ES256")
        for pol in (lenient, _policy()):
            with pytest.raises(IssuerError) as ei:
                appraise(tok, pol, keys)
            assert ei.value.check == f"appraisal.{name}"
