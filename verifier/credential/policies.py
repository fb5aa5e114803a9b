"""The verification result and the relying-party policy objects (sigstore-python style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from ..errors import VerificationError
from .parse import CredentialInfo
from .wire import SBOM_MEDIA_TYPES


@dataclass
class CredentialVerification:
    """Everything established by :func:`verify_credential`."""

    credential: CredentialInfo
    record: dict[str, Any]
    record_statement: Any                     # verifier.statement.SignedStatement
    receipts: list[Any]                       # ReceiptResult, at least one ok
    workload_provenance: list[dict[str, Any]] = field(default_factory=list)  # verified in-toto statements
    ear_verified: bool = False
    ear_claims: dict[str, Any] | None = None
    now: float = 0.0
    private: bool = False
    wpt_claims: dict[str, Any] | None = None  # the verified WIMSE WPT, when one was given
    statuses: list[Any] = field(default_factory=list)  # verified status statements (none revoking)
    policies: dict[str, bytes] = field(default_factory=dict)  # logged policy documents, when checked


class Policy(Protocol):
    """A relying-party policy: ``verify`` raises VerificationError("policy.<name>", ...)."""

    def verify(self, result: CredentialVerification) -> None: ...


class AllOf:
    def __init__(self, children: Sequence[Policy]):
        if not children:
            raise VerificationError("policy.config", "AllOf needs at least one policy")
        self.children = list(children)

    def verify(self, result: CredentialVerification) -> None:
        for c in self.children:
            c.verify(result)


class AnyOf:
    def __init__(self, children: Sequence[Policy]):
        if not children:
            raise VerificationError("policy.config", "AnyOf needs at least one policy")
        self.children = list(children)

    def verify(self, result: CredentialVerification) -> None:
        errors = []
        for c in self.children:
            try:
                c.verify(result)
                return
            except VerificationError as e:
                errors.append(str(e))
        raise VerificationError("policy.any-of", "no alternative held: " + "; ".join(errors))


class UnsafeNoOp:
    """Accept anything beyond the cryptographic checks (say so explicitly)."""

    def verify(self, result: CredentialVerification) -> None:
        return None


class StatusAffirming:
    """The recorded appraisal is affirming overall and in every submodule (or warning, if allowed)."""

    def __init__(self, allow_warning: bool = False):
        self.ok = {"affirming", "warning"} if allow_warning else {"affirming"}

    def verify(self, result: CredentialVerification) -> None:
        att = result.record.get("attestation") or {}
        statuses = [att.get("ear_status")] + [s.get("ear_status") for s in (att.get("submods") or {}).values()
                                              if isinstance(s, Mapping)]
        if result.ear_claims is not None:  # the EAR itself was verified: judge it too
            statuses += list(ear_statuses(result.ear_claims))
        bad = [s for s in statuses if s not in self.ok]
        if bad or len(statuses) < 2:
            raise VerificationError("policy.status", f"appraisal status {bad or 'missing'} is not "
                                    + " or ".join(sorted(self.ok)))


class EarVerified:
    """The EAR embedded in the record verified under a trusted Verifier key."""

    def verify(self, result: CredentialVerification) -> None:
        if not result.ear_verified:
            raise VerificationError("policy.ear", "the attestation result was not verified (not embedded or no verifier keys)")


class VerifierIs:
    def __init__(self, developer: str, build: str | None = None):
        self.developer, self.build = developer, build

    def verify(self, result: CredentialVerification) -> None:
        vid = (result.record.get("attestation") or {}).get("verifier_id") or {}
        if vid.get("developer") != self.developer or (self.build is not None and vid.get("build") != self.build):
            raise VerificationError("policy.verifier", f"appraised by {vid}, not {self.developer}")


class SbomPresent:
    """A verified Workload Provenance statement references an SBOM (CycloneDX or SPDX JSON)."""

    def __init__(self, media_types: Sequence[str] = SBOM_MEDIA_TYPES):
        self.media_types = tuple(media_types)

    def verify(self, result: CredentialVerification) -> None:
        for wpr in result.workload_provenance:
            for rd in (wpr.get("predicate") or {}).get("composition") or []:
                mt = rd.get("mediaType", "") if isinstance(rd, Mapping) else ""
                if isinstance(mt, str) and mt.split(";")[0].strip() in self.media_types and rd.get("digest"):
                    return
        raise VerificationError("policy.sbom", "no verified workload provenance references an SBOM")


class MaxRecordAge:
    """The Credential Provenance record was made at most ``seconds`` ago."""

    def __init__(self, seconds: int):
        self.seconds = int(seconds)

    def verify(self, result: CredentialVerification) -> None:
        iat = result.record.get("iat")
        if not isinstance(iat, int) or result.now - iat > self.seconds:
            raise VerificationError("policy.record-age", f"record older than {self.seconds} s")


class WorkloadIs:
    """The credential's workload identifier is this one (or in this trust domain, given ``prefix``)."""

    def __init__(self, workload_id: str, *, prefix: bool = False):
        self.workload_id, self.prefix = workload_id, prefix

    def verify(self, result: CredentialVerification) -> None:
        sub = result.credential.sub
        if not (sub.startswith(self.workload_id) if self.prefix else sub == self.workload_id):
            raise VerificationError("policy.workload", f"workload {sub} is not {self.workload_id}")


_EAR_STATUS_CODES = {0: "none", 2: "affirming", 32: "warning", 96: "contraindicated"}


def ear_statuses(claims: Mapping[str, Any]):
    for k in ("ear_status", "ear.status"):
        if k in claims:
            yield _EAR_STATUS_CODES.get(claims[k], claims[k])
    for app in (claims.get("submods") or {}).values():
        if isinstance(app, Mapping):
            for k in ("ear_status", "ear.status"):
                if k in app:
                    yield _EAR_STATUS_CODES.get(app[k], app[k])
