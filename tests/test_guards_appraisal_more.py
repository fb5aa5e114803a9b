"""Appraisal guards the discovery mutation run found unchecked (issue 16): trust-claim values,
status codes, verifier keys (alg, private parts, developer binding), submodule rules, claim
generations, the JWS alg, the profile, times. Each case: refused with its own check, or accepted
where the guard lets it through."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from issuer import IssuerError
from issuer.appraisal import AppraisalPolicy, SubmodRule, VerifierKeys, appraise

from .test_twi_support import VERIFIER_BUILD, VERIFIER_DEV, TestVerifier, policy_obj

PROFILE = "tag:ietf.org,2026:rats/ear#03"
LEGACY = "tag:github.com,2023:veraison/ear"
OTHER_DEV = "https://other-verifier.test"


@pytest.fixture(scope="module")
def ver():
    return TestVerifier()


def _sub(**over):
    s = {"ear_status": "affirming",
         "ear_trustworthiness_vector": {"instance-identity": 2, "executables": 2, "hardware": 2},
         "ear_appraisal_policy_ids": ["https://verifier.test/policy/1"]}
    s.update(over)
    return {k: v for k, v in s.items() if v is not None}


def _claims(sub=None, **over):
    c = {"eat_profile": PROFILE, "iat": int(time.time()),
         "ear_verifier_id": {"developer": VERIFIER_DEV, "build": VERIFIER_BUILD},
         "submods": {"cc-tee": _sub() if sub is None else sub}}
    c.update(over)
    return c


def _policy(**over):
    return AppraisalPolicy.from_obj(policy_obj(require_nonce=False, **over))


def _tok(ver, claims, headers=None, alg="ES256"):
    return jwt.encode(claims, ver.key, algorithm=alg, headers={"typ": "JWT", **(headers or {})})


def _keys(ver):
    return VerifierKeys.from_obj(ver.keys_obj())


def _refused(check, token, policy, keys, **kw):
    with pytest.raises(IssuerError) as ei:
        appraise(token, policy, keys, **kw)
    assert ei.value.check == check, str(ei.value)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


# -- trust-claim values: an int in -128..127, not a bool, whether or not a rule names the claim

@pytest.mark.parametrize("value", [128, -129, 1000, 2.5, "2", True, None, [2]])
@pytest.mark.parametrize("claim", ["hardware", "storage-opaque"])
def test_trust_claim_value_out_of_type_or_range_refused(ver, claim, value):
    tv = {"instance-identity": 2, "executables": 2, "hardware": 2, claim: value}
    _refused("appraisal.trust-vector", _tok(ver, _claims(_sub(ear_trustworthiness_vector=tv))), _policy(), _keys(ver))


@pytest.mark.parametrize("value,tier_ok", [(127, False), (-128, False), (2, True), (-2, True), (31, True)])
def test_trust_claim_range_ends_accepted_as_values(ver, value, tier_ok):
    """The ends of the range are values (a tier), not refusals: a policy listing the value accepts it."""
    tv = {"executables": 2, "hardware": value}
    pol = _policy(submods={"*": {"trust_vector": {"hardware": [value]}}})
    assert appraise(_tok(ver, _claims(_sub(ear_trustworthiness_vector=tv))), pol, _keys(ver)).submods[
        "cc-tee"]["ear_trustworthiness_vector"]["hardware"] == value


def test_unknown_trust_claims_ignored(ver):
    """Unknown claims (extensibility) are neither range-checked nor reported."""
    tv = {"executables": 2, "hardware": 2, "x-vendor-claim": "text", 99: 1000}
    a = appraise(_tok(ver, _claims(_sub(ear_trustworthiness_vector=tv))), _policy(), _keys(ver))
    assert a.submods["cc-tee"]["ear_trustworthiness_vector"] == {"executables": 2, "hardware": 2}


def test_submodule_without_trust_vector_accepted(ver):
    a = appraise(_tok(ver, _claims(_sub(ear_trustworthiness_vector=None))), _policy(submods={"*": {}}), _keys(ver))
    assert a.status == "affirming" and "ear_trustworthiness_vector" not in a.submods["cc-tee"]


# -- status codes

@pytest.mark.parametrize("code,rule,status", [(2, {}, "affirming"), (32, {"status": "warning"}, "warning")])
def test_integer_status_codes_accepted(ver, code, rule, status):
    pol = _policy(submods={"*": rule})
    a = appraise(_tok(ver, _claims(_sub(ear_status=code, ear_trustworthiness_vector=None), ear_status=code)),
                 pol, _keys(ver))
    assert a.status == status and a.submods["cc-tee"]["ear_status"] == status


# -- verifier keys

def test_declared_jwk_alg_used(ver):
    """A key's declared alg (RS256) is the one it verifies, not the default of its type (PS256)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(k.public_key(), as_dict=True)
    jwk["alg"] = "RS256"
    keys = VerifierKeys.from_obj({"verifiers": [{"id": {"developer": VERIFIER_DEV}, "keys": [jwk]}]})
    tok = jwt.encode(_claims(), k, algorithm="RS256", headers={"typ": "JWT"})
    assert appraise(tok, _policy(), keys).status == "affirming"


def test_keys_of_other_algorithms_not_tried(ver):
    """A verifier with an RSA key listed before its EC key: an ES256 EAR is checked with the EC key only."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rjwk = RSAAlgorithm.to_jwk(k.public_key(), as_dict=True)
    keys = VerifierKeys.from_obj({"verifiers": [{"id": {"developer": VERIFIER_DEV, "build": VERIFIER_BUILD},
                                                 "keys": [rjwk, ver.jwk]}]})
    assert appraise(_tok(ver, _claims()), _policy(), keys).status == "affirming"


def test_private_verifier_key_refused(ver):
    k = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(k, as_dict=True)
    assert "d" in jwk
    for obj in ({"keys": [jwk]}, {"verifiers": [{"id": {"developer": VERIFIER_DEV}, "keys": [jwk]}]}):
        with pytest.raises(IssuerError) as ei:
            VerifierKeys.from_obj(obj)
        assert ei.value.check == "appraisal.keys"


def test_jwks_key_speaks_for_any_verifier(ver):
    """A plain JWKS key has no verifier id: it signs for every verifier the policy allows."""
    keys = VerifierKeys.from_obj({"keys": [ver.jwk]})
    pol = _policy(allowed_verifiers=[{"developer": VERIFIER_DEV}, {"developer": OTHER_DEV}])
    for dev in (VERIFIER_DEV, OTHER_DEV):
        assert appraise(_tok(ver, _claims(ear_verifier_id={"developer": dev, "build": "x"})), pol, keys)


def test_key_speaks_only_for_its_developer(ver):
    """The key is configured for VERIFIER_DEV (any build); an EAR it signed claiming another
    developer (allowed by the policy) is not its to sign."""
    keys = VerifierKeys.from_obj({"verifiers": [{"id": {"developer": VERIFIER_DEV}, "keys": [ver.jwk]}]})
    pol = _policy(allowed_verifiers=[{"developer": VERIFIER_DEV}, {"developer": OTHER_DEV}])
    assert appraise(_tok(ver, _claims(ear_verifier_id={"developer": VERIFIER_DEV, "build": "v9"})), pol, keys)
    _refused("appraisal.verifier-unknown",
             _tok(ver, _claims(ear_verifier_id={"developer": OTHER_DEV, "build": "v9"})), pol, keys)


# -- submodule rules

@pytest.mark.parametrize("rule", [
    {"statuss": "warning"},
    {"status": "affirming", "trust-vector": {"hardware": "affirming"}},
    {"trust_vector": {"hardware": 2}},
    {"trust_vector": {"hardware": None}},
    {"trust_vector": {"hardware": {"2": 1}}},
])
def test_submodule_rules_validated_more(rule):
    with pytest.raises(IssuerError) as ei:
        SubmodRule.from_obj(rule)
    assert ei.value.check == "appraisal.policy"


# -- claim generations

def test_legacy_names_not_read_in_2026_profile(ver):
    legacy_sub = {"ear.status": "affirming", "ear.trustworthiness-vector": {"executables": 2, "hardware": 2}}
    pol = policy_obj(require_nonce=False)
    del pol["allowed_appraisal_policy_ids"]
    _refused("appraisal.status", _tok(ver, _claims(legacy_sub)), AppraisalPolicy.from_obj(pol), _keys(ver))
    c = _claims()
    c["ear.verifier-id"] = c.pop("ear_verifier_id")
    _refused("appraisal.verifier-id", _tok(ver, c), _policy(), _keys(ver))


@pytest.mark.parametrize("value", [5, ["https://verifier.test/policy/1"], None])
def test_legacy_policy_id_must_be_text_at_top_level_too(ver, value):
    c = {"eat_profile": LEGACY, "iat": int(time.time()),
         "ear.verifier-id": {"developer": VERIFIER_DEV, "build": VERIFIER_BUILD},
         "ear.appraisal-policy-id": value,
         "submods": {"cc-tee": {"ear.status": "affirming",
                                "ear.trustworthiness-vector": {"executables": 2, "hardware": 2},
                                "ear.appraisal-policy-id": "https://verifier.test/policy/1"}}}
    _refused("appraisal.claims", _tok(ver, c), _policy(), _keys(ver))
    c["ear.appraisal-policy-id"] = "https://verifier.test/policy/1"
    assert appraise(_tok(ver, c), _policy(), _keys(ver)).status == "affirming"


# -- JWS alg and profile

def test_missing_or_empty_or_none_alg_refused(ver):
    body = _b64(_claims())
    sig = base64.urlsafe_b64encode(b"\x00" * 64).rstrip(b"=").decode()
    for header in ({"typ": "JWT"}, {"typ": "JWT", "alg": ""}, {"typ": "JWT", "alg": "none"}):
        _refused("appraisal.alg", f"{_b64(header)}.{body}.{sig}", _policy(), _keys(ver))


@pytest.mark.parametrize("profile", [None, 3, 3.5, True, [PROFILE], {"p": PROFILE}])
def test_non_text_profile_refused(ver, profile):
    c = _claims(eat_profile=profile)
    if profile is None:
        del c["eat_profile"]
    _refused("appraisal.profile", _tok(ver, c), _policy(), _keys(ver))


def test_allowed_profiles_accept_listed_profile(ver):
    pol = _policy(allowed_profiles=[PROFILE])
    assert appraise(_tok(ver, _claims()), pol, _keys(ver)).profile == PROFILE
    _refused("appraisal.profile", _tok(ver, _claims(eat_profile="tag:ietf.org,2026:rats/ear#04")), pol, _keys(ver))


# -- times

@pytest.mark.parametrize("iat", [None, "1700000000", [1], True, False])
def test_iat_missing_or_not_a_number_refused(ver, iat):
    c = _claims(iat=iat)
    if iat is None:
        del c["iat"]
    _refused("appraisal.iat", _tok(ver, c), _policy(), _keys(ver))


def test_float_exp_refused_unless_lenient(ver):
    now = time.time()
    tok = _tok(ver, _claims(iat=int(now), exp=now + 60.5))
    _refused("appraisal.exp", tok, _policy(), _keys(ver))
    assert appraise(tok, _policy(lenient=True), _keys(ver))


@pytest.mark.parametrize("name", ["exp", "nbf"])
def test_bool_exp_nbf_refused(ver, name):
    tok = _tok(ver, _claims(**{name: True}))
    for pol in (_policy(), _policy(check_time=False), _policy(lenient=True)):
        _refused(f"appraisal.{name}", tok, pol, _keys(ver))


def test_iat_at_the_skew_limit_accepted(ver):
    now = 1_800_000_000
    pol = _policy(clock_skew=60)
    assert appraise(_tok(ver, _claims(iat=now + 60)), pol, _keys(ver), now=now).iat == now + 60
    _refused("appraisal.iat", _tok(ver, _claims(iat=now + 61)), pol, _keys(ver), now=now)


def test_age_limits(ver):
    now = 1_800_000_000
    keys = _keys(ver)
    pol = _policy(max_age=300)
    assert appraise(_tok(ver, _claims(iat=now - 300)), pol, keys, now=now)
    _refused("appraisal.expired", _tok(ver, _claims(iat=now - 301)), pol, keys, now=now)
    assert appraise(_tok(ver, _claims(iat=now - 86400)), _policy(max_age=0), keys, now=now).iat == now - 86400


def test_exp_and_nbf_limits(ver):
    now = 1_800_000_000
    keys = _keys(ver)
    pol = _policy(clock_skew=60)
    assert appraise(_tok(ver, _claims(iat=now, exp=now - 59)), pol, keys, now=now)
    _refused("appraisal.expired", _tok(ver, _claims(iat=now, exp=now - 60)), pol, keys, now=now)
    assert appraise(_tok(ver, _claims(iat=now, nbf=now + 60)), pol, keys, now=now)
    _refused("appraisal.nbf", _tok(ver, _claims(iat=now, nbf=now + 61)), pol, keys, now=now)
    _refused("appraisal.nbf", _tok(ver, _claims(iat=now, nbf=now + 3600)), pol, keys, now=now)


@pytest.mark.parametrize("submods", [None, {}, [], ["cc-tee"], "cc-tee", {"cc-tee": "affirming"},
                                     {"cc-tee": ["affirming"]}])
def test_submods_must_be_a_non_empty_map_of_maps(ver, submods):
    c = _claims(submods=submods)
    if submods is None:
        del c["submods"]
    _refused("appraisal.submods", _tok(ver, c), _policy(), _keys(ver))


@pytest.mark.parametrize("pids", ["https://verifier.test/policy/1", [], [5], ["https://verifier.test/policy/1", None],
                                  {"a": 1}])
def test_appraisal_policy_ids_must_be_a_non_empty_text_array(ver, pids):
    pol = policy_obj(require_nonce=False)
    del pol["allowed_appraisal_policy_ids"]
    _refused("appraisal.claims", _tok(ver, _claims(_sub(ear_appraisal_policy_ids=pids))),
             AppraisalPolicy.from_obj(pol), _keys(ver))


def test_submodule_without_policy_id_refused_when_policy_lists_them(ver):
    tok = _tok(ver, _claims(_sub(ear_appraisal_policy_ids=None)))
    _refused("appraisal.reference", tok, _policy(), _keys(ver))
    pol = policy_obj(require_nonce=False)
    del pol["allowed_appraisal_policy_ids"]
    assert appraise(tok, AppraisalPolicy.from_obj(pol), _keys(ver))


def test_ear_nonce_accepted_without_a_challenge_when_not_required(ver):
    a = appraise(_tok(ver, _claims(eat_nonce="n-1")), _policy(), _keys(ver))
    assert a.nonce == "n-1"


def test_key_attestation(ver):
    keys = _keys(ver)
    akpub = b"\x30\x59fake-spki"
    ak = {"akpub": base64.urlsafe_b64encode(akpub).rstrip(b"=").decode()}
    pol = _policy(require_key_attestation=True)
    assert appraise(_tok(ver, _claims(_sub(**{"ear.veraison.key-attestation": ak}))), pol, keys).key_attestation == akpub
    for bad in (None, "not-a-map", {"akpub": 5}):
        tok = _tok(ver, _claims(_sub(**{"ear.veraison.key-attestation": bad})))
        _refused("appraisal.key-attestation", tok, pol, keys)
        assert appraise(tok, _policy(), keys).key_attestation is None
