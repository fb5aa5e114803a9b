"""``twi-verify credential``: the command line over :func:`verify_credential`."""

from __future__ import annotations

import json
from typing import Any

from ..errors import VerificationError
from .fetch import fetch_external, fetch_statements
from .parse import parse_credential
from .policies import AllOf, EarVerified, MaxRecordAge, Policy, SbomPresent, StatusAffirming
from .records import decrypt_record
from .trust import TrustConfig, load_verifier_keys
from .verify import verify_credential, verify_credential_signature


def add_parser(subparsers: Any) -> Any:
    """Register ``credential`` on a ``twi-verify`` argparse subparsers object."""
    p = subparsers.add_parser(
        "credential", help="verify a workload credential against its provenance in the log",
        description="Check a WIT or X.509 SVID, its Credential Provenance statement (issuer signature, "
                    "receipt, both directions of the binding), the linked Workload Provenance and a "
                    "relying-party policy. Exit 0 ok, 1 verification failed, 2 usage/unreadable input.")
    p.add_argument("credential", help="file with the WIT (compact JWS) or the certificate (PEM/DER)")
    p.add_argument("--statement", action="append", default=[], metavar="FILE",
                   help="transparent statement (CPR, WPR, status, policy); repeatable; a CBOR array of them is accepted")
    p.add_argument("--fetch", action="store_true",
                   help="fetch the statements from the credential's pointer or, for a credential without one "
                        "(external binding), by its identifiers from the --log URL(s); only after the "
                        "credential's signature verified, only from logs given with --log (size-capped, "
                        "time-limited, no redirect to another host)")
    p.add_argument("--log-key", action="append", default=[], metavar="FILE", required=True,
                   help="log key file (COSE_KeySet/COSE_Key/PEM); repeatable")
    p.add_argument("--issuer-key", action="append", default=[], metavar="FILE", help="issuer public key; repeatable")
    p.add_argument("--ca", action="append", default=[], metavar="FILE", help="X.509 CA certificate (PEM/DER)")
    p.add_argument("--verifier-keys", metavar="FILE", help="trusted RATS verifier keys (JSON)")
    p.add_argument("--log", action="append", default=[], metavar="URL", help="accepted log URL (receipt issuer)")
    p.add_argument("--record", metavar="FILE", help="plaintext record (private records)")
    p.add_argument("--record-encrypted", metavar="FILE", help="encrypted record (COSE_Encrypt0) ...")
    p.add_argument("--record-key", metavar="HEX", help="... and its 32-byte key in hex")
    p.add_argument("--allow-warning", action="store_true", help="accept warning appraisal status")
    p.add_argument("--require-sbom", action="store_true", help="require an SBOM in the workload provenance")
    p.add_argument("--require-ear", action="store_true", help="require the embedded EAR to verify")
    p.add_argument("--max-age", type=int, metavar="SECONDS", help="maximum age of the provenance record")
    p.add_argument("--check-policies", action="store_true",
                   help="require the appraisal and issuance policies the record references to be logged by its "
                        "issuer with the digests it carries (given with --statement, or fetched with --fetch)")
    p.add_argument("--wpr-document", action="append", default=[], metavar="FILE",
                   help="the document of a private Workload Provenance statement (matched by SHA-256); repeatable")
    p.add_argument("--wpt", metavar="FILE", help="WIMSE Workload Proof Token presented with the WIT: checked "
                   "(typ wpt+jwt, signed by the WIT's cnf key, wth = this WIT, not expired)")
    p.add_argument("--wpt-aud", metavar="AUD", help="with --wpt: the audience the WPT must name (this relying party)")
    p.add_argument("--no-time-checks", action="store_true", help="skip credential validity times")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_credential)
    return p


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run_credential(args: Any) -> int:
    import sys

    from cryptography import x509 as cx509

    from .. import cbor
    from .. import keys as vkeys

    try:
        cred = _read(args.credential)
        log_keys: dict[bytes, Any] = {}
        for f in args.log_key:
            log_keys.update(vkeys.load_public_keys(f))
        issuer_keys: dict[bytes, Any] = {}
        for f in args.issuer_key:
            issuer_keys.update(vkeys.load_public_keys(f))
        cas = []
        for f in args.ca:
            raw = _read(f)
            cas.append(cx509.load_pem_x509_certificate(raw) if raw.lstrip().startswith(b"-----")
                       else cx509.load_der_x509_certificate(raw))
        vkeys_list = load_verifier_keys(json.loads(_read(args.verifier_keys))) if args.verifier_keys else []
        statements: list[bytes] = []
        for f in args.statement:
            raw = _read(f)
            if raw[:1] == b"\xd2":
                statements.append(raw)
            else:
                arr = cbor.loads(raw)
                if not isinstance(arr, list):
                    raise VerificationError("input.statement", f"{f}: neither a COSE_Sign1 nor an array")
                statements += arr
        record = _read(args.record) if args.record else None
        wpt = _read(args.wpt) if args.wpt else None
        wpr_docs = [_read(f) for f in args.wpr_document]
        if args.record_encrypted:
            if not args.record_key:
                print("--record-encrypted needs --record-key", file=sys.stderr)
                return 2
            info = parse_credential(cred)
            if info.pointer is None:
                raise VerificationError("binding.no-pointer", "credential has no pointer")
            record = decrypt_record(_read(args.record_encrypted), bytes.fromhex(args.record_key), info.pointer.rid)
        if args.fetch:
            # verify before fetching: an unverified credential names no URL we contact, and
            # only logs the relying party trusts (--log) are contacted
            if not args.log:
                print("--fetch needs --log URL: statements are fetched only from logs you trust", file=sys.stderr)
                return 2
            import time

            info = parse_credential(cred)
            verify_credential_signature(info, TrustConfig(log_keys=log_keys, issuer_keys=issuer_keys, ca_certs=cas),
                                        time.time(), not args.no_time_checks)
            if info.pointer is not None:
                statements += fetch_statements(info.pointer, trusted_logs=list(args.log),
                                               policies=args.check_policies)
            elif args.log:
                for log in args.log:  # external binding: look the record up at the logs the relying party names
                    statements += fetch_external(log, info, policies=args.check_policies)
            else:
                raise VerificationError("binding.no-pointer", "the credential has no pointer: name the log "
                                        "that holds its record with --log URL")
        if not statements:
            print("give --statement FILE or --fetch", file=sys.stderr)
            return 2
    except OSError as e:
        print(f"error: cannot read input: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: unreadable input: {e}", file=sys.stderr)
        return 2
    except VerificationError as e:
        if e.check.startswith(("key.", "trust.", "input.")):
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"FAILED {e}", file=sys.stderr)
        return 1
    parts: list[Policy] = [StatusAffirming(allow_warning=args.allow_warning)]
    if args.require_sbom:
        parts.append(SbomPresent())
    if args.require_ear:
        parts.append(EarVerified())
    if args.max_age is not None:
        parts.append(MaxRecordAge(args.max_age))
    trust = TrustConfig(log_keys=log_keys, issuer_keys=issuer_keys, ca_certs=cas, verifier_keys=vkeys_list,
                        logs=list(args.log))
    try:
        res = verify_credential(cred, statements, trust, policy=AllOf(parts), record=record,
                                check_time=not args.no_time_checks, wpt=wpt, wpt_audience=args.wpt_aud,
                                wpr_documents=wpr_docs, check_policies=args.check_policies)
    except VerificationError as e:
        if args.json:
            print(json.dumps({"ok": False, "check": e.check, "detail": e.detail}))
        else:
            print(f"FAILED {e}", file=sys.stderr)
        return 1
    summary = {
        "ok": True, "format": res.credential.format, "sub": res.credential.sub,
        "jti": res.credential.jti, "serial": res.credential.serial, "record": res.record["rid"],
        "private": res.private, "status": res.record["attestation"].get("ear_status"),
        "verifier": res.record["attestation"].get("verifier_id"), "ear_verified": res.ear_verified,
        "workload_provenance_verified": len(res.workload_provenance),
        "wpt_verified": res.wpt_claims is not None,
        "receipts": [r.to_json() for r in res.receipts],
        "binding": "internal" if res.credential.pointer else "external",
        "prev": res.record.get("prev"),
        "policies_checked": sorted(res.policies),
        "statuses": [{"status": s.status, "time": s.time, "reason": s.reason} for s in res.statuses],
    }
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"OK {res.credential.format} {res.credential.sub} record {res.record['rid']} "
              f"status {summary['status']} receipts {len(res.receipts)} "
              f"workload-provenance {len(res.workload_provenance)}")
    return 0
