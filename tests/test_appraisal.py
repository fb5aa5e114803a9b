"""EAR appraisal: the public vector, both claim generations, every policy knob."""

from __future__ import annotations

import hashlib
import json
import time

import jwt
import pytest

from issuer import IssuerError
from issuer.appraisal import AppraisalPolicy, VerifierKeys, appraise, tier_of

from .test_twi_support import VERIFIER_DEV, TestVerifier, policy_obj

VERAISON = "https://veraison-project.org"


@pytest.fixture(scope="module")
def vector(vectors_dir):
    token = (vectors_dir / "jose" / "ear-example.jwt").read_text().strip()
    jwk = json.loads((vectors_dir / "jose" / "keys.json").read_text())["ear-example.jwt"]["jwk"]
    return token, jwk


def vector_policy(**over):
    p = {"id": "https://issuer.test/policies/ar/veraison", "allowed_verifiers": [{"developer": VERAISON, "build": "vts 0.0.1"}],
         "check_time": False, "lenient": True, "required_submods": ["PARSEC_TPM"],
         "submods": {"PARSEC_TPM": {"status": "affirming",
                                    "trust_vector": {"hardware": "affirming", "executables": "affirming",
                                                     "instance-identity": [2]}}},
         "allowed_appraisal_policy_ids": ["https://veraison.example/policy/1/60a0068d"],
         "require_nonce": False}  # the vector's EAR carries no challenge of ours
    p.update(over)
    return AppraisalPolicy.from_obj(p)


def vector_keys(jwk):
    return VerifierKeys.from_obj({"verifiers": [{"id": {"developer": VERAISON}, "keys": [jwk]}]})


def test_vector_appraises_as_policy_says(vector):
    token, jwk = vector
    a = appraise(token, vector_policy(), vector_keys(jwk))
    assert a.status == "affirming"
    assert a.profile == "tag:github.com,2023:veraison/ear"
    assert a.verifier_id == {"developer": VERAISON, "build": "vts 0.0.1"}
    assert a.iat == 1666529184
    # legacy names normalised to the 2026 ones
    assert a.submods == {"PARSEC_TPM": {"ear_status": "affirming",
                                        "ear_trustworthiness_vector": {"executables": 2, "hardware": 2, "instance-identity": 2},
                                        "ear_appraisal_policy_ids": ["https://veraison.example/policy/1/60a0068d"]}}
    assert a.ear_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert a.key_attestation is not None and a.key_attestation.startswith(b"0Y0\x13")  # P-256 SPKI


@pytest.mark.parametrize("over,check", [
    ({"lenient": False}, "appraisal.iat"),                                # float iat only in lenient mode
    ({"check_time": True}, "appraisal.expired"),                          # 2022 token, 300 s max age
    ({"allowed_verifiers": [{"developer": "https://other.example"}]}, "appraisal.verifier-unknown"),
    ({"allowed_verifiers": [{"developer": VERAISON, "build": "vts 9"}]}, "appraisal.verifier-unknown"),
    ({"allowed_appraisal_policy_ids": ["https://veraison.example/policy/2"]}, "appraisal.reference"),
    ({"required_submods": ["CCA_REALM"]}, "appraisal.submods"),
    ({"submods": {"*": {"trust_vector": {"configuration": "affirming"}}}}, "appraisal.trust-vector"),
    ({"submods": {"*": {"trust_vector": {"hardware": [3]}}}}, "appraisal.trust-vector"),
    ({"require_nonce": True}, "appraisal.nonce"),
    ({"allowed_profiles": ["tag:ietf.org,2026:rats/ear#03"]}, "appraisal.profile"),
])
def test_vector_refused_by_stricter_policy(vector, over, check):
    token, jwk = vector
    with pytest.raises(IssuerError) as ei:
        appraise(token, vector_policy(**over), vector_keys(jwk))
    assert ei.value.check == check


def test_vector_with_wrong_key_is_unknown_verifier(vector):
    token, _ = vector
    other = TestVerifier().jwk
    with pytest.raises(IssuerError) as ei:
        appraise(token, vector_policy(), VerifierKeys.from_obj({"verifiers": [{"id": {"developer": VERAISON}, "keys": [other]}]}))
    assert ei.value.check == "appraisal.signature"


def test_vector_tampered_claims_refused(vector):
    token, jwk = vector
    h, p, s = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(p))
    claims["submods"]["PARSEC_TPM"]["ear.status"] = "affirming"
    claims["submods"]["PARSEC_TPM"]["ear.trustworthiness-vector"]["hardware"] = 3
    forged = ".".join([h, jwt.utils.base64url_encode(json.dumps(claims).encode()).decode(), s])
    with pytest.raises(IssuerError) as ei:
        appraise(forged, vector_policy(), vector_keys(jwk))
    assert ei.value.check == "appraisal.signature"


@pytest.fixture(scope="module")
def ver():
    return TestVerifier()


def keys_of(v):
    return VerifierKeys.from_obj(v.keys_obj())


@pytest.mark.parametrize("legacy", [False, True])
def test_both_generations_accepted(ver, legacy):
    a = appraise(ver.ear(legacy=legacy), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert a.status == "affirming"
    assert a.submods["cc-tee"]["ear_appraisal_policy_ids"] == ["https://verifier.test/policy/1"]
    assert a.profile.startswith("tag:ietf.org" if not legacy else "tag:github.com")


@pytest.mark.parametrize("legacy", [False, True])
def test_contraindicated_refused(ver, legacy):
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(status="contraindicated", legacy=legacy), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.status"


def test_warning_only_when_accepted(ver):
    ear = ver.ear(status="warning")
    with pytest.raises(IssuerError):
        appraise(ear, AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    pol = policy_obj(require_nonce=False, submods={"*": {"accept_warning": True}})
    assert appraise(ear, AppraisalPolicy.from_obj(pol), keys_of(ver)).status == "warning"


def test_top_level_status_is_checked(ver):
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(top_status="contraindicated"), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.status"


def test_trust_vector_threshold(ver):
    pol = AppraisalPolicy.from_obj(policy_obj(require_nonce=False))
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(tv={"executables": 2, "hardware": 97}), pol, keys_of(ver))
    assert ei.value.check == "appraisal.trust-vector"
    with pytest.raises(IssuerError):
        appraise(ver.ear(tv={"executables": 33, "hardware": 2}), pol, keys_of(ver))  # warning tier
    warn_ok = AppraisalPolicy.from_obj(policy_obj(require_nonce=False, submods={"*": {"trust_vector": {"executables": "warning"}}}))
    assert appraise(ver.ear(tv={"executables": 33}), warn_ok, keys_of(ver)).status == "affirming"


def test_times(ver):
    pol = AppraisalPolicy.from_obj(policy_obj(require_nonce=False, max_age=60, clock_skew=5))
    now = time.time()
    appraise(ver.ear(iat=int(now) - 30), pol, keys_of(ver), now=now)
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(iat=int(now) - 120), pol, keys_of(ver), now=now)
    assert ei.value.check == "appraisal.expired"
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(exp=int(now) - 10), pol, keys_of(ver), now=now)
    assert ei.value.check == "appraisal.expired"
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(iat=int(now) + 600), pol, keys_of(ver), now=now)
    assert ei.value.check == "appraisal.iat"
    with pytest.raises(IssuerError) as ei:  # the 2026 profile forbids float iat
        appraise(ver.ear(iat=now - 1.5), pol, keys_of(ver), now=now)
    assert ei.value.check == "appraisal.iat"


def test_nonce_required_by_default(ver):
    """Safe default: a policy that does not mention require_nonce binds EARs to the challenge."""
    pol = AppraisalPolicy.from_obj({k: v for k, v in policy_obj().items() if k != "require_nonce"})
    assert pol.require_nonce is True
    with pytest.raises(IssuerError) as ei:
        appraise(ver.ear(), pol, keys_of(ver))
    assert ei.value.check == "appraisal.nonce" and "require_nonce" in ei.value.detail
    assert appraise(ver.ear(nonce="bm9uY2U"), pol, keys_of(ver), nonce="bm9uY2U").nonce == "bm9uY2U"


def test_nonce_binding(ver):
    pol = AppraisalPolicy.from_obj(policy_obj(require_nonce=True))
    ear = ver.ear(nonce="bm9uY2Utb2YtdGhlLWlzc3Vlcg")
    assert appraise(ear, pol, keys_of(ver), nonce="bm9uY2Utb2YtdGhlLWlzc3Vlcg").nonce == "bm9uY2Utb2YtdGhlLWlzc3Vlcg"
    with pytest.raises(IssuerError) as ei:
        appraise(ear, pol, keys_of(ver), nonce="c29tZS1vdGhlci1jaGFsbGVuZ2U")
    assert ei.value.check == "appraisal.nonce"
    with pytest.raises(IssuerError):
        appraise(ver.ear(), pol, keys_of(ver), nonce="bm9uY2Utb2YtdGhlLWlzc3Vlcg")


def test_unknown_verifier_key_and_id(ver):
    stranger = TestVerifier()  # same claimed id, different key
    with pytest.raises(IssuerError) as ei:
        appraise(stranger.ear(), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.signature"
    other = TestVerifier(developer="https://rogue.test")
    with pytest.raises(IssuerError) as ei:
        appraise(other.ear(), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.verifier-unknown"


def test_unacceptable_algs_and_profiles(ver):
    claims = jwt.decode(ver.ear(), options={"verify_signature": False})
    hs = jwt.encode(claims, "secret-secret-secret-secret-1234", algorithm="HS256")
    with pytest.raises(IssuerError) as ei:
        appraise(hs, AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.alg"
    claims["eat_profile"] = "tag:example.com,2020:something"
    with pytest.raises(IssuerError) as ei:
        appraise(jwt.encode(claims, ver.key, algorithm="ES256"), AppraisalPolicy.from_obj(policy_obj(require_nonce=False)), keys_of(ver))
    assert ei.value.check == "appraisal.profile"


@pytest.mark.parametrize("v,tier", [(0, "none"), (1, "none"), (-1, "none"), (2, "affirming"), (31, "affirming"),
                                    (-2, "affirming"), (-32, "affirming"), (32, "warning"), (95, "warning"),
                                    (-33, "warning"), (-96, "warning"), (96, "contraindicated"),
                                    (127, "contraindicated"), (-97, "contraindicated"), (-128, "contraindicated")])
def test_tiers(v, tier):
    assert tier_of(v) == tier


def test_policy_files(tmp_path, ver):
    toml = tmp_path / "p.toml"
    toml.write_text('id = "urn:policy:t"\nmax_age = 60\nrequire_nonce = false\nallowed_appraisal_policy_ids = ["https://verifier.test/policy/1"]\n'
                    f'[[allowed_verifiers]]\ndeveloper = "{VERIFIER_DEV}"\n'
                    '[submods."*"]\nstatus = "affirming"\n[submods."*".trust_vector]\nhardware = "affirming"\n')
    pol = AppraisalPolicy.load(toml)
    assert pol.digest == hashlib.sha256(toml.read_bytes()).hexdigest()
    assert appraise(ver.ear(), pol, keys_of(ver)).policy_digest == pol.digest
    js = tmp_path / "p.json"
    js.write_text(json.dumps(policy_obj(bogus=1)))
    with pytest.raises(IssuerError) as ei:
        AppraisalPolicy.load(js)
    assert ei.value.check == "appraisal.policy"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=8) | st.sampled_from(["affirming", "warning", "none", "contraindicated"]),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(
                         st.sampled_from(["ear_status", "ear.status", "ear_trustworthiness_vector", "hardware",
                                          "executables", "ear_appraisal_policy_ids", "ear.appraisal-policy-id",
                                          "eat_nonce", "x"]), c, max_size=4), max_leaves=12)

_SIGNER = TestVerifier()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(submods=st.one_of(_json, st.dictionaries(st.text(max_size=5), _json, max_size=3)),
       top=st.dictionaries(st.sampled_from(["iat", "exp", "nbf", "eat_nonce", "ear_status", "ear_verifier_id"]), _json,
                           max_size=3),
       legacy=st.booleans())
def test_arbitrary_signed_claims_never_crash(submods, top, legacy):
    claims = {"eat_profile": "tag:github.com,2023:veraison/ear" if legacy else "tag:ietf.org,2026:rats/ear#03",
              "iat": int(time.time()), ("ear.verifier-id" if legacy else "ear_verifier_id"): {"developer": VERIFIER_DEV},
              "submods": submods}
    claims.update(top)
    token = jwt.encode(claims, _SIGNER.key, algorithm="ES256")
    pol_obj = policy_obj(require_nonce=False, submods={"*": {}})
    del pol_obj["allowed_appraisal_policy_ids"]
    pol = AppraisalPolicy.from_obj(pol_obj)
    try:
        a = appraise(token, pol, keys_of(_SIGNER))
    except IssuerError:
        return
    assert a.status in ("affirming",) and a.submods  # accepted only when every submodule affirms
