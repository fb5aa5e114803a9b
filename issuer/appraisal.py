"""Appraisal of EAR attestation results (``application/eat+jwt``) by the credential issuer.

The issuer is a Relying Party of the RATS Verifier: it checks the EAR's JWS signature with
the configured verifier keys, normalises the two generations of claim names and applies
the Appraisal Policy for Attestation Results described in ``docs/appraisal-policy.md``.

Claim names (TWI.md section 2): the generation is chosen by ``eat_profile``

* legacy (``tag:github.com,2023:veraison/ear``, ``tag:github.com,2024:confidential-containers/Trustee``):
  ``ear.status``, ``ear.verifier-id``, ``ear.trustworthiness-vector``,
  ``ear.appraisal-policy-id`` (text), ``ear.raw-evidence``;
* 2026 (``tag:ietf.org,2026:rats/ear#NN``): ``ear_status``, ``ear_verifier_id``,
  ``ear_trustworthiness_vector``, ``ear_appraisal_policy_ids`` (non-empty array),
  ``ear_raw_evidence``; ``iat``/``exp`` are integers.

Everything is normalised to the 2026 names. A refusal raises :class:`IssuerError` with a
``check`` beginning ``appraisal.``; an acceptance returns an :class:`Appraisal`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from verifier import VerificationError
from verifier.credential.ear import attested_artifacts

from .errors import IssuerError

LEGACY_PROFILES = frozenset({
    "tag:github.com,2023:veraison/ear",
    "tag:github.com,2024:confidential-containers/Trustee",
})
CURRENT_PROFILE_PREFIX = "tag:ietf.org,2026:rats/ear#"
CURRENT_PROFILE = "tag:ietf.org,2026:rats/ear#03"
EAR_MEDIA_TYPE = "application/eat+jwt"

STATUS_VALUES = {"none": 0, "affirming": 2, "warning": 32, "contraindicated": 96}
_STATUS_BY_CODE = {v: k for k, v in STATUS_VALUES.items()}
# badness order used to find the worst status; "none" (no claim made) is never acceptable
_BADNESS = {"affirming": 0, "none": 1, "warning": 2, "contraindicated": 3}

TRUST_CLAIMS = ("instance-identity", "configuration", "executables", "file-system",
                "hardware", "runtime-opaque", "storage-opaque", "sourced-data")
_TRUST_CLAIM_BY_CODE = dict(enumerate(TRUST_CLAIMS))

_LEGACY_NAMES = {
    "ear.status": "ear_status",
    "ear.verifier-id": "ear_verifier_id",
    "ear.trustworthiness-vector": "ear_trustworthiness_vector",
    "ear.appraisal-policy-id": "ear_appraisal_policy_ids",
    "ear.raw-evidence": "ear_raw_evidence",
}
_ACCEPTED_TYP = {None, "JWT", "eat+jwt", "application/eat+jwt"}


def tier_of(value: int) -> str:
    """AR4SI trustworthiness claim value -> tier (Veraison trustclaim.go ranges)."""
    if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
        raise IssuerError("appraisal.trust-vector", f"claim value {value!r} is not an int in -128..127")
    if -1 <= value <= 1:
        return "none"
    if 2 <= value <= 31 or -32 <= value <= -2:
        return "affirming"
    if 32 <= value <= 95 or -96 <= value <= -33:
        return "warning"
    return "contraindicated"


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: _BADNESS[s])


def _status_name(v: Any, where: str) -> str:
    if isinstance(v, str) and v in STATUS_VALUES:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[v]
    raise IssuerError("appraisal.status", f"{where}: unknown ear_status {v!r}")


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, no whitespace, UTF-8) used for policy digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------
# verifier keys


_ALG_FOR_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "Ed25519": "EdDSA"}


def jwk_alg(jwk: Mapping[str, Any]) -> str:
    alg = jwk.get("alg")
    if alg:
        return alg
    if jwk.get("kty") in ("EC", "OKP"):
        try:
            return _ALG_FOR_CURVE[jwk["crv"]]
        except KeyError:
            raise IssuerError("appraisal.keys", f"unsupported curve {jwk.get('crv')!r}") from None
    if jwk.get("kty") == "RSA":
        return "PS256"
    raise IssuerError("appraisal.keys", f"unsupported key type {jwk.get('kty')!r}")


def public_key_from_jwk(jwk: Mapping[str, Any]):
    kty = jwk.get("kty")
    data = json.dumps(dict(jwk))
    if "d" in jwk:
        raise IssuerError("appraisal.keys", "verifier keys must be public keys")
    if kty == "EC":
        return ECAlgorithm.from_jwk(data)
    if kty == "OKP":
        return OKPAlgorithm.from_jwk(data)
    if kty == "RSA":
        return RSAAlgorithm.from_jwk(data)
    raise IssuerError("appraisal.keys", f"unsupported key type {kty!r}")


@dataclass(frozen=True)
class VerifierKey:
    developer: str | None  # None: the key may sign for any verifier id
    build: str | None
    alg: str
    key: Any
    jwk: Mapping[str, Any]

    def speaks_for(self, verifier_id: Mapping[str, Any]) -> bool:
        if self.developer is not None and verifier_id.get("developer") != self.developer:
            return False
        if self.build is not None and verifier_id.get("build") != self.build:
            return False
        return True


class VerifierKeys:
    """The verifier keys the issuer trusts.

    File format (JSON)::

        {"verifiers": [{"id": {"developer": "https://veraison-project.org", "build": "vts 0.0.1"},
                        "keys": [<JWK>, ...]}]}

    ``build`` is optional (any build of that developer). A plain JWKS ``{"keys": [...]}`` is
    also accepted: such keys may sign for any verifier id (the policy's allowed_verifiers
    still applies).
    """

    def __init__(self, keys: list[VerifierKey]):
        # may be empty: an issuer that only registers workload provenance needs no Verifier;
        # appraising with no keys is refused (candidates)
        self.keys = keys

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> "VerifierKeys":
        out: list[VerifierKey] = []
        if "verifiers" in obj:
            for entry in obj["verifiers"]:
                vid = entry.get("id") or {}
                for jwk in entry.get("keys", []):
                    out.append(VerifierKey(vid.get("developer"), vid.get("build"), jwk_alg(jwk),
                                           public_key_from_jwk(jwk), dict(jwk)))
        elif "keys" in obj:
            for jwk in obj["keys"]:
                out.append(VerifierKey(None, None, jwk_alg(jwk), public_key_from_jwk(jwk), dict(jwk)))
        else:
            raise IssuerError("appraisal.keys", "expected {'verifiers': [...]} or a JWKS {'keys': [...]}")
        return cls(out)

    @classmethod
    def load(cls, path: str | Path) -> "VerifierKeys":
        try:
            return cls.from_obj(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise IssuerError("appraisal.keys", f"cannot read verifier keys {path}: {e}") from e

    def candidates(self, verifier_id: Mapping[str, Any], alg: str) -> list[VerifierKey]:
        if not self.keys:
            raise IssuerError("appraisal.keys", "no verifier keys configured (to try the flow: "
                                                "twi-issuer dev-verifier init --trust-in ISSUER_JSON)")
        return [k for k in self.keys if k.alg == alg and k.speaks_for(verifier_id)]


# --------------------------------------------------------------------------------------
# policy


@dataclass
class SubmodRule:
    status: str = "affirming"          # the status required
    accept_warning: bool = False       # also accept "warning"
    trust_vector: dict[str, Any] = field(default_factory=dict)  # claim -> worst tier or [values]

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> "SubmodRule":
        unknown = set(obj) - {"status", "accept_warning", "trust_vector"}
        if unknown:
            raise IssuerError("appraisal.policy", f"unknown submodule rule keys {sorted(unknown)}")
        status = obj.get("status", "affirming")
        if status not in ("affirming", "warning"):
            raise IssuerError("appraisal.policy", f"required status must be affirming or warning, not {status!r}")
        tv = dict(obj.get("trust_vector", {}))
        for claim, want in tv.items():
            if claim not in TRUST_CLAIMS:
                raise IssuerError("appraisal.policy", f"unknown trust claim {claim!r}")
            if isinstance(want, str):
                if want not in ("affirming", "warning"):
                    raise IssuerError("appraisal.policy", f"trust_vector.{claim}: threshold must be affirming or warning")
            elif not (isinstance(want, list) and want and all(isinstance(v, int) for v in want)):
                raise IssuerError("appraisal.policy", f"trust_vector.{claim}: expected a tier or a list of values")
        return cls(status=status, accept_warning=bool(obj.get("accept_warning", status == "warning")),
                   trust_vector=tv)

    def acceptable_statuses(self) -> set[str]:
        return {"affirming", "warning"} if self.accept_warning else {"affirming"}


_POLICY_KEYS = {"id", "version", "allowed_verifiers", "allowed_profiles", "submods", "required_submods",
                "allowed_appraisal_policy_ids", "check_time", "max_age", "clock_skew", "require_nonce",
                "lenient", "require_key_attestation", "description"}


def read_policy_file(path: str | Path, check: str) -> tuple[dict, bytes]:
    """A policy file (TOML by suffix, else JSON) as (object, the raw bytes its digest covers)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        obj = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as e:
        raise IssuerError(check, f"cannot read policy {path}: {e}") from e
    return obj, raw


def _text_list(obj: Mapping[str, Any], key: str) -> list[str] | None:
    """An optional list of texts of a policy document (absent: None)."""
    if key not in obj:
        return None
    v = obj[key]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise IssuerError("appraisal.policy", f"{key}: expected a list of texts")
    return list(v)


@dataclass
class AppraisalPolicy:
    id: str
    allowed_verifiers: list[dict[str, str]]
    submods: dict[str, SubmodRule]
    required_submods: list[str] = field(default_factory=list)
    allowed_profiles: list[str] | None = None
    allowed_appraisal_policy_ids: list[str] | None = None
    check_time: bool = True
    max_age: int | None = 300
    clock_skew: int = 60
    require_nonce: bool = True   # safe default: an EAR is bound to the issuer's challenge
    lenient: bool = False
    require_key_attestation: bool = False
    version: str | None = None
    digest: str = ""  # SHA-256 hex of the policy document as loaded
    raw: bytes = b""  # the document's bytes (what the digest covers; what the issuer logs)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], raw: bytes | None = None) -> "AppraisalPolicy":
        unknown = set(obj) - _POLICY_KEYS
        if unknown:
            raise IssuerError("appraisal.policy", f"unknown policy keys {sorted(unknown)}")
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise IssuerError("appraisal.policy", "policy needs an 'id' (URI)")
        av = obj.get("allowed_verifiers")
        if not av or not all(isinstance(v, Mapping) and isinstance(v.get("developer"), str) for v in av):
            raise IssuerError("appraisal.policy", "allowed_verifiers: a non-empty list of {developer, build?}")
        rules = obj.get("submods") or {}
        if not isinstance(rules, Mapping) or not all(isinstance(r, Mapping) for r in rules.values()):
            raise IssuerError("appraisal.policy", "submods: a map of submodule name to rule (a map)")
        subs = {name: SubmodRule.from_obj(rule) for name, rule in rules.items()}
        subs.setdefault("*", SubmodRule())
        max_age = obj.get("max_age", 300)
        try:
            max_age = None if max_age in (None, 0) else int(max_age)
            clock_skew = int(obj.get("clock_skew", 60))
        except (TypeError, ValueError):
            raise IssuerError("appraisal.policy", "max_age and clock_skew: a number of seconds") from None
        return cls(
            id=obj["id"], version=obj.get("version"),
            allowed_verifiers=[dict(v) for v in av], submods=subs,
            required_submods=_text_list(obj, "required_submods") or [],
            allowed_profiles=_text_list(obj, "allowed_profiles"),
            allowed_appraisal_policy_ids=_text_list(obj, "allowed_appraisal_policy_ids"),
            check_time=bool(obj.get("check_time", True)),
            max_age=max_age,
            clock_skew=clock_skew,
            require_nonce=bool(obj.get("require_nonce", True)),
            lenient=bool(obj.get("lenient", False)),
            require_key_attestation=bool(obj.get("require_key_attestation", False)),
            digest=hashlib.sha256(raw if raw is not None else canonical_json(obj)).hexdigest(),
            raw=raw if raw is not None else canonical_json(obj),
        )

    @classmethod
    def load(cls, path: str | Path) -> "AppraisalPolicy":
        obj, raw = read_policy_file(path, "appraisal.policy")
        return cls.from_obj(obj, raw)

    def rule_for(self, submod: str) -> SubmodRule:
        return self.submods.get(submod, self.submods["*"])

    def verifier_allowed(self, vid: Mapping[str, Any]) -> bool:
        for a in self.allowed_verifiers:
            if a["developer"] == vid.get("developer") and ("build" not in a or a["build"] == vid.get("build")):
                return True
        return False


# --------------------------------------------------------------------------------------
# appraisal


@dataclass
class Appraisal:
    """An accepted attestation result, normalised to the 2026 claim names."""

    ear: str                       # the EAR JWT as received (ASCII compact JWS)
    ear_sha256: str                # hex SHA-256 of the EAR bytes
    profile: str
    verifier_id: dict[str, Any]
    iat: int
    status: str                    # worst status over the submods (and top-level if present)
    submods: dict[str, dict[str, Any]]
    nonce: str | None
    policy_id: str
    policy_digest: str
    rules: list[str]               # the rules that were checked, in words
    key_attestation: bytes | None = None  # SPKI DER of an attested key (ear.veraison.key-attestation)
    jti: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # attested artefact digests (wire.ATTESTED_ARTIFACTS_CLAIM)

    @property
    def media_type(self) -> str:
        return f'{EAR_MEDIA_TYPE}; eat_profile="{self.profile}"'


def _b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _normalise(claims: Mapping[str, Any], legacy: bool) -> dict[str, Any]:
    if not legacy:
        return dict(claims)
    out = {}
    for k, v in claims.items():
        nk = _LEGACY_NAMES.get(k, k)
        if k == "ear.appraisal-policy-id":
            if not isinstance(v, str):
                raise IssuerError("appraisal.claims", "ear.appraisal-policy-id must be text")
            v = [v]
        out[nk] = v
    return out


def _trust_vector(tv: Any, where: str) -> dict[str, int]:
    if tv is None:
        return {}
    if not isinstance(tv, Mapping):
        raise IssuerError("appraisal.trust-vector", f"{where}: trustworthiness vector is not a map")
    out = {}
    for k, v in tv.items():
        name = _TRUST_CLAIM_BY_CODE.get(k, k) if isinstance(k, int) else k
        if name not in TRUST_CLAIMS:
            continue  # unknown claims are ignored (extensibility)
        tier_of(v)  # range check
        out[name] = v
    return out


def _nonces(v: Any) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def appraise(ear: str | bytes, policy: AppraisalPolicy, keys: VerifierKeys, *,
             nonce: str | None = None, now: float | None = None) -> Appraisal:
    """Verify and appraise one EAR JWT. Raises :class:`IssuerError` on refusal."""
    token = ear.decode("ascii") if isinstance(ear, bytes) else ear.strip()
    rules: list[str] = []
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise IssuerError("appraisal.malformed", f"not a JWT: {e}") from e
    alg = header.get("alg")
    if not alg or alg == "none" or alg.startswith("HS"):
        raise IssuerError("appraisal.alg", f"algorithm {alg!r} is not acceptable")
    if header.get("typ") not in _ACCEPTED_TYP:
        raise IssuerError("appraisal.typ", f"unexpected typ {header.get('typ')!r}")

    profile = unverified.get("eat_profile")
    if not isinstance(profile, str) or not (profile in LEGACY_PROFILES or profile.startswith(CURRENT_PROFILE_PREFIX)):
        raise IssuerError("appraisal.profile", f"unknown eat_profile {profile!r}")  # (a list or map: unhashable)
    legacy = profile in LEGACY_PROFILES
    if policy.allowed_profiles is not None and profile not in policy.allowed_profiles:
        raise IssuerError("appraisal.profile", f"eat_profile {profile!r} not allowed by policy")

    claims0 = _normalise(unverified, legacy)
    vid = claims0.get("ear_verifier_id")
    if not isinstance(vid, Mapping) or not isinstance(vid.get("developer"), str):
        raise IssuerError("appraisal.verifier-id", "ear_verifier_id {developer, build} missing")
    if not policy.verifier_allowed(vid):
        raise IssuerError("appraisal.verifier-unknown", f"verifier {dict(vid)} is not allowed by policy")
    candidates = keys.candidates(vid, alg)
    if not candidates:
        raise IssuerError("appraisal.verifier-unknown", f"no {alg} key configured for verifier {dict(vid)}")
    for cand in candidates:
        try:
            jwt.decode(token, cand.key, algorithms=[alg],
                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                "verify_aud": False, "verify_iss": False, "verify_sub": False,
                                "verify_jti": False})
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as e:
            raise IssuerError("appraisal.malformed", str(e)) from e
    else:
        raise IssuerError("appraisal.signature", f"EAR signature does not verify with any key of {dict(vid)}")
    rules.append(f"signed by allowed verifier {vid.get('developer')} ({vid.get('build')})")
    claims = claims0

    # -- times
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise IssuerError("appraisal.iat", "iat missing or not a number")
    if isinstance(iat, float):
        if not policy.lenient:
            raise IssuerError("appraisal.iat", "iat is not an integer (accepted only in lenient mode)")
        iat = int(iat)
    for name in ("exp", "nbf"):
        v = claims.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            if not (policy.lenient and isinstance(v, float)):
                raise IssuerError(f"appraisal.{name}", f"{name} is not an integer")
    if policy.check_time:
        t = time.time() if now is None else now
        skew = policy.clock_skew
        if iat > t + skew:
            raise IssuerError("appraisal.iat", "EAR issued in the future")
        if policy.max_age is not None and t - iat > policy.max_age:
            raise IssuerError("appraisal.expired", f"EAR is {int(t - iat)} s old, policy allows {policy.max_age} s")
        if claims.get("exp") is not None and t >= claims["exp"] + skew:
            raise IssuerError("appraisal.expired", "EAR exp has passed")
        if claims.get("nbf") is not None and claims["nbf"] > t + skew:
            raise IssuerError("appraisal.nbf", "EAR not yet valid")
        rules.append(f"fresh (age <= {policy.max_age} s)")
    else:
        rules.append("time checks disabled by policy")

    # -- submods
    submods = claims.get("submods")
    if not isinstance(submods, Mapping) or not submods:
        raise IssuerError("appraisal.submods", "submods missing or empty")
    for req in policy.required_submods:
        if req not in submods:
            raise IssuerError("appraisal.submods", f"required submodule {req!r} missing")
    nonces = _nonces(claims.get("eat_nonce"))
    norm_subs: dict[str, dict[str, Any]] = {}
    statuses = []
    akpub = None
    for name, raw_app in submods.items():
        if not isinstance(raw_app, Mapping):
            raise IssuerError("appraisal.submods", f"submodule {name!r} is not a map")
        app = _normalise(raw_app, legacy)
        st = _status_name(app.get("ear_status"), f"submod {name}")
        rule = policy.rule_for(name)
        if st not in rule.acceptable_statuses():
            raise IssuerError("appraisal.status", f"submodule {name!r} is {st}; policy requires "
                              + " or ".join(sorted(rule.acceptable_statuses())))
        tv = _trust_vector(app.get("ear_trustworthiness_vector"), f"submod {name}")
        for claim, want in rule.trust_vector.items():
            if claim not in tv:
                raise IssuerError("appraisal.trust-vector", f"submodule {name!r}: claim {claim} absent")
            if isinstance(want, list):
                if tv[claim] not in want:
                    raise IssuerError("appraisal.trust-vector",
                                      f"submodule {name!r}: {claim}={tv[claim]} not in {want}")
            else:
                ok = {"affirming"} if want == "affirming" else {"affirming", "warning"}
                if tier_of(tv[claim]) not in ok:
                    raise IssuerError("appraisal.trust-vector",
                                      f"submodule {name!r}: {claim}={tv[claim]} is {tier_of(tv[claim])}, needs {want}")
        pids = app.get("ear_appraisal_policy_ids")
        if pids is not None and (not isinstance(pids, list) or not pids or not all(isinstance(p, str) for p in pids)):
            raise IssuerError("appraisal.claims", f"submodule {name!r}: ear_appraisal_policy_ids must be a non-empty text array")
        if policy.allowed_appraisal_policy_ids is not None:
            if not pids:
                raise IssuerError("appraisal.reference", f"submodule {name!r} names no appraisal policy")
            bad = [p for p in pids if p not in policy.allowed_appraisal_policy_ids]
            if bad:
                raise IssuerError("appraisal.reference", f"submodule {name!r}: appraisal policy {bad} not allowed")
        nonces += _nonces(app.get("eat_nonce"))
        ka = app.get("ear.veraison.key-attestation")
        if isinstance(ka, Mapping) and isinstance(ka.get("akpub"), str):
            akpub = _b64url_decode(ka["akpub"])
        entry: dict[str, Any] = {"ear_status": st}
        if tv:
            entry["ear_trustworthiness_vector"] = tv
        if pids:
            entry["ear_appraisal_policy_ids"] = list(pids)
        norm_subs[name] = entry
        statuses.append(st)
        rules.append(f"submod {name}: {st}" + (f", trust vector {rule.trust_vector}" if rule.trust_vector else ""))

    overall = worst(statuses)
    if claims.get("ear_status") is not None:
        top = _status_name(claims["ear_status"], "top level")
        if top not in policy.rule_for("*").acceptable_statuses():
            raise IssuerError("appraisal.status", f"top-level ear_status is {top}")
        overall = worst([overall, top])

    if policy.require_nonce:
        if nonce is None:
            raise IssuerError("appraisal.nonce", "the appraisal policy requires the EAR to carry the issuer's challenge "
                              "(eat_nonce) and no challenge was given; an operator who accepts replayable EARs "
                              "sets \"require_nonce\": false")
        if nonce not in nonces:
            raise IssuerError("appraisal.nonce", "eat_nonce does not match the issuer's challenge")
        rules.append("nonce bound to the issuer's challenge")
    elif nonce is not None and nonces and nonce not in nonces:
        raise IssuerError("appraisal.nonce", "eat_nonce does not match the issuer's challenge")

    try:
        artifacts = attested_artifacts(claims, "appraisal.claims")
    except VerificationError as e:
        raise IssuerError(e.check, e.detail) from None
    if artifacts:
        rules.append(f"{len(artifacts)} attested artefact digest(s)")

    if policy.require_key_attestation and akpub is None:
        raise IssuerError("appraisal.key-attestation", "policy requires an attested workload key")

    return Appraisal(
        ear=token, ear_sha256=hashlib.sha256(token.encode("ascii")).hexdigest(), profile=profile,
        verifier_id=dict(vid), iat=int(iat), status=overall, submods=norm_subs,
        nonce=nonces[0] if nonces else None, policy_id=policy.id, policy_digest=policy.digest,
        rules=rules, key_attestation=akpub, jti=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        artifacts=artifacts,
    )
