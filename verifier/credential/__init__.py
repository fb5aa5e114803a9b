"""Relying-party check of a TWI workload credential against its provenance in the log.

Given a credential (a WIT or an X.509 SVID), its transparent Credential Provenance
statement (and, optionally, the Workload Provenance statement it links to) and a trust
configuration (log keys, issuer keys or CA, verifier keys), :func:`verify_credential`
checks, offline:

1. the credential: issuer signature (WIT: JWS with ``typ`` ``wit+jwt``; X.509: signed by the
   CA), workload identifier syntax (spiffe:// or wimse://), validity times, ``cnf``
   (``parse``, ``workload_id``, ``signature``);
2. the Credential Provenance statement: issuer signature (kid = RFC 9679 thumbprint),
   COSE receipt(s) from a trusted log (``verify``, ``records``);
3. both directions of the binding: the credential points at this record (internal pointer:
   record id and log), the record names this credential (SHA-256 of its bytes, ``jti`` or
   issuer DN and serial, iss, sub) (``binding``);
4. optionally the Workload Provenance statement the record links to (by leaf digest), and
   the EAR embedded in the record (signature by a trusted verifier, digest) (``ear``);
5. a relying-party policy built from small objects (:class:`AllOf`, :class:`AnyOf`,
   :class:`StatusAffirming`, :class:`SbomPresent`, :class:`MaxRecordAge`, ...), in the style
   of sigstore-python's ``verify/policy.py`` (``policies``).

Every failure raises :class:`verifier.VerificationError`. Formats: docs/credential-provenance.md.
This package imports nothing from ``tlog`` or ``issuer``; the issuer imports the constants
and parsers re-exported here so both sides agree on the wire.

Modules, one concern each: ``wire`` (shared names), ``workload_id``, ``der`` (pointer
extension), ``parse`` (credentials), ``records`` (CPR decoding, private records), ``trust``,
``signature`` (the credential's own signature), ``binding`` (credential <-> record, workload and
attestation binding), ``ear``, ``status`` (revocation), ``logged_policy`` (the issuer's policies in
the log), ``wpt`` (WIMSE proof of possession), ``policies`` (result and relying-party policy),
``verify`` (the composition), ``fetch``, ``cli`` (``twi-verify credential``).
"""

from __future__ import annotations

from .cli import add_parser, run_credential
from .der import decode_pointer_ext, encode_pointer_ext
from .fetch import fetch_external, fetch_statements
from .parse import CredentialInfo, Pointer, jwk_thumbprint, parse_credential
from .policies import (AllOf, AnyOf, CredentialVerification, EarVerified, MaxRecordAge, Policy, SbomPresent,
                       StatusAffirming, UnsafeNoOp, VerifierIs, WorkloadIs)
from .records import decrypt_record, encode_encrypt0
from .trust import TrustConfig, load_verifier_keys
from .verify import verify_credential
from .wire import (APPRAISAL_POLICY_MEDIA_TYPE, ATTESTED_ARTIFACTS_CLAIM, ISSUANCE_POLICY_MEDIA_TYPE,
                   POLICY_MEDIA_TYPES, STATUS_MEDIA_TYPE, STATUS_TYPE, WPT_TYP, CPR_MEDIA_TYPE, CPR_TYPE, EAR_MEDIA_TYPE, INTOTO_MEDIA_TYPE, INTOTO_STATEMENT_TYPE, LOOKUP_PATH,
                   POINTER_CLAIM, POINTER_OID, SBOM_MEDIA_TYPES, WIT_MEDIA_TYPE, WPR_PREDICATE_TYPE, X509_MEDIA_TYPE,
                   b64url, b64url_decode, locator)
from .workload_id import validate_workload_id

__all__ = [
    "APPRAISAL_POLICY_MEDIA_TYPE", "ATTESTED_ARTIFACTS_CLAIM", "ISSUANCE_POLICY_MEDIA_TYPE", "POLICY_MEDIA_TYPES",
    "STATUS_MEDIA_TYPE", "STATUS_TYPE", "WPT_TYP",
    "AllOf", "AnyOf", "CPR_MEDIA_TYPE", "CPR_TYPE", "CredentialInfo", "CredentialVerification", "EAR_MEDIA_TYPE",
    "EarVerified", "INTOTO_MEDIA_TYPE", "INTOTO_STATEMENT_TYPE", "LOOKUP_PATH", "MaxRecordAge", "POINTER_CLAIM",
    "POINTER_OID", "Pointer", "Policy", "SBOM_MEDIA_TYPES", "SbomPresent", "StatusAffirming", "TrustConfig",
    "UnsafeNoOp", "VerifierIs", "WIT_MEDIA_TYPE", "WPR_PREDICATE_TYPE", "WorkloadIs", "X509_MEDIA_TYPE",
    "add_parser", "b64url", "b64url_decode", "decode_pointer_ext", "decrypt_record", "encode_encrypt0",
    "fetch_external", "fetch_statements", "jwk_thumbprint", "load_verifier_keys", "locator", "parse_credential", "run_credential",
    "validate_workload_id", "verify_credential",
]
