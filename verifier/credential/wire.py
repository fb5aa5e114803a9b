"""The wire names both sides share (the issuer imports them): claim, OID, types, media types."""

from __future__ import annotations

import base64
import re
import urllib.parse

from ..errors import VerificationError

#: WIT claim carrying the internal binding (collision-resistant name per the WIMSE rule;
#: ``example.org`` is a placeholder domain to be replaced by the deployer's own, or by a
#: registered ``twi_prov`` claim).
POINTER_CLAIM = "example.org/twi_prov"
#: X.509 extension carrying the internal binding. 1.3.6.1.4.1.99999 is a PLACEHOLDER
#: Private Enterprise Number arc and MUST be replaced by an assigned PEN before deployment.
#: Value: DER ``SEQUENCE { log IA5String, rid UTF8String }``, non-critical.
POINTER_OID = "1.3.6.1.4.1.99999.1.2"

CPR_TYPE = "tag:twi-tlog.example,2026:cpr/v1"
CPR_MEDIA_TYPE = "application/vnd.twi.cpr+cbor"
WPR_PREDICATE_TYPE = "tag:twi-tlog.example,2026:twi/workload-provenance/v1"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
WIT_MEDIA_TYPE = "application/wit+jwt"
X509_MEDIA_TYPE = "application/pkix-cert"
EAR_MEDIA_TYPE = "application/eat+jwt"
LOOKUP_PATH = "/twi/v1/cpr"

SBOM_MEDIA_TYPES = ("application/spdx+json", "application/spdx3+json", "application/vnd.cyclonedx+json")


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise VerificationError("encoding.base64url", "not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def locator(log: str, rid: str) -> str:
    """The URL at which a log serves the Credential Provenance record ``rid``."""
    return f"{log.rstrip('/')}{LOOKUP_PATH}?rid={urllib.parse.quote(rid, safe='')}"

#: EAR claim (in a submodule's appraisal, or at the top level) listing the artefacts the
#: Verifier measured: ``[{"name"?: tstr, "digest": {alg: lowercase hex}}]`` (in-toto
#: ResourceDescriptor subset). PLACEHOLDER name (no registered EAR claim carries artefact
#: digests); ``example.org`` is to be replaced like :data:`POINTER_CLAIM`.
ATTESTED_ARTIFACTS_CLAIM = "example.org/twi_artifacts"

#: Status statements (revocation) about a Credential Provenance record: PLACEHOLDER type
#: URI and vendor media type, like the CPR's.
STATUS_TYPE = "tag:twi-tlog.example,2026:cpr-status/v1"
STATUS_MEDIA_TYPE = "application/vnd.twi.cpr-status+cbor"

#: The issuer's policies as logged statements (payload: the policy document's bytes, whose
#: SHA-256 the records carry). PLACEHOLDER vendor media types.
APPRAISAL_POLICY_MEDIA_TYPE = "application/vnd.twi.appraisal-policy+json"
ISSUANCE_POLICY_MEDIA_TYPE = "application/vnd.twi.issuance-policy+json"
POLICY_MEDIA_TYPES = {APPRAISAL_POLICY_MEDIA_TYPE: "appraisal", ISSUANCE_POLICY_MEDIA_TYPE: "issuance",
                      "application/vnd.twi.appraisal-policy+toml": "appraisal",
                      "application/vnd.twi.issuance-policy+toml": "issuance"}

#: WIMSE Workload Proof Token (draft-ietf-wimse-s2s-protocol) JOSE typ.
WPT_TYP = "wpt+jwt"
