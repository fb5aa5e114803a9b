"""``twi-issuer``: keys, appraise, register-workload-provenance, issue, revoke, replay, serve, audit.

Exit codes: 0 done, 1 refused (appraisal, policy, registration), 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import VerificationError
from verifier import keys as vkeys
from verifier.credential import b64url
from verifier.files import private_dir, write_private

from .errors import IssuerError


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    if mode & 0o077 == 0:  # a secret: 0600 from the first byte, never a chmod after the write
        write_private(path, data, overwrite=True)
        return
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def cmd_keys(a: argparse.Namespace) -> int:
    import secrets

    from .credentials import make_ca

    d = private_dir(a.dir)
    if (d / "issuer.pem").exists() and not a.force:
        print(f"{d / 'issuer.pem'} exists (use --force)", file=sys.stderr)
        return 2
    key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "issuer.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
    _write(d / "issuer.pub.pem", key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    _write(d / "ca.pem", make_ca(key, common_name=a.ca_name).public_bytes(serialization.Encoding.PEM))
    _write(d / "vault.key", secrets.token_bytes(32).hex() + "\n", 0o600)
    if not (d / "appraisal-policy.json").exists():
        _write(d / "appraisal-policy.json", json.dumps({
            "id": f"{a.issuer_id.rstrip('/')}/policies/appraisal/1",
            "allowed_verifiers": [{"developer": a.verifier_developer}],
            "submods": {"*": {"status": "affirming", "accept_warning": False,
                              "trust_vector": {"executables": "affirming", "hardware": "affirming"}}},
            "max_age": 300, "check_time": True,
            "require_nonce": True,
            "description": "EARs are accepted only from the allowed verifiers, at most 300 s old, affirming in "
                           "every submodule, and carrying the issuer's challenge (require_nonce: an EAR "
                           "captured elsewhere cannot be replayed; set it to false only if the attester "
                           "cannot echo a challenge)"}, indent=2) + "\n")
    if not (d / "issuance-policy.json").exists():
        _write(d / "issuance-policy.json", json.dumps({
            "id": f"{a.issuer_id.rstrip('/')}/policies/issuance/1", "credential_lifetime": 3600,
            "formats": ["wit", "x509-svid"], "embed_ear": True, "private_records": False,
            "bind_attested_key": True,
            "description": "A credential is issued only for the key the EAR attests (bind_attested_key: a "
                           "captured EAR cannot obtain a credential for another key; set it to false only if "
                           "the attester cannot attest the workload key)"}, indent=2) + "\n")
    if not (d / "verifier-keys.json").exists():
        _write(d / "verifier-keys.json", json.dumps({"verifiers": []}, indent=2) + "\n")
    cfg = {"issuer_id": a.issuer_id, "key": "issuer.pem", "ca_cert": "ca.pem", "log_url": a.log_url,
           "appraisal_policy": "appraisal-policy.json", "verifier_keys": "verifier-keys.json",
           "issuance_policy": "issuance-policy.json", "vault_dir": "vault", "vault_key": "vault.key",
           "state_dir": "state"}
    _write(d / "issuer.json", json.dumps(cfg, indent=2) + "\n")
    # tlog_issuer_key: what the log operator gives `tlog serve --issuer-key` (the key, bound to the
    # issuer identity its statements claim; the log refuses a key without identities)
    print(json.dumps({"config": str(d / "issuer.json"), "kid": vkeys.thumbprint(key).hex(),
                      "public_key": str(d / "issuer.pub.pem"), "ca": str(d / "ca.pem"),
                      "tlog_issuer_key": {"path": str(d / "issuer.pub.pem"), "iss": [a.issuer_id]}}, indent=2))
    return 0


def cmd_appraise(a: argparse.Namespace) -> int:
    from .appraisal import AppraisalPolicy, VerifierKeys, appraise

    if a.config:
        from .config import _path, load_config
        cfg, base = load_config(a.config)
        policy = AppraisalPolicy.load(_path(base, cfg["appraisal_policy"]))
        keys = VerifierKeys.load(_path(base, cfg["verifier_keys"]))
    elif a.policy and a.verifier_keys:
        policy, keys = AppraisalPolicy.load(a.policy), VerifierKeys.load(a.verifier_keys)
    else:
        print("give --config, or --policy and --verifier-keys", file=sys.stderr)
        return 2
    ear = Path(a.ear).read_text().strip()
    try:
        r = appraise(ear, policy, keys, nonce=a.nonce)
    except IssuerError as e:
        print(json.dumps({"accepted": False, "check": e.check, "detail": e.detail}))
        return 1
    print(json.dumps({"accepted": True, "status": r.status, "profile": r.profile, "verifier_id": r.verifier_id,
                      "submods": r.submods, "ear_sha256": r.ear_sha256, "policy": {"id": r.policy_id,
                      "sha256": r.policy_digest}, "rules": r.rules}, indent=2))
    return 0


def _load_workload_key(path: str) -> Any:
    from .devtools import load_workload_key

    return load_workload_key(path)


def cmd_register_wpr(a: argparse.Namespace) -> int:
    from .config import build_issuer, save_wpr
    from .provenance import resource_descriptor, sbom_descriptor, slsa_descriptor, workload_provenance

    iss = build_issuer(a.config)
    subjects = []
    for s in a.artifact:
        name, _, dg = s.rpartition("=")
        alg, _, hexv = dg.partition(":")
        if not name or not hexv:
            print(f"--artifact NAME=ALG:HEX, got {s!r}", file=sys.stderr)
            return 2
        subjects.append({"name": name, "digest": {alg: hexv.lower()}})
    comp = [sbom_descriptor(Path(f).read_bytes(), name=Path(f).name) for f in a.sbom]
    comp += [slsa_descriptor(Path(f).read_bytes(), name=Path(f).name) for f in a.slsa]
    compliance = []
    for c in a.compliance:
        f, _, mt = c.partition(":")
        compliance.append(resource_descriptor(Path(f).read_bytes(), mt or "application/octet-stream", name=Path(f).name))
    vendor = [{"name": v, "role": "software-vendor"} for v in a.vendor]
    stmt = workload_provenance(workload_id=a.workload_id, subjects=subjects, composition=comp,
                               compliance=compliance, vendor=vendor)
    ref, reg = iss.register_workload_provenance(stmt, private=a.private)
    save_wpr(iss, a.workload_id, ref)
    if a.out:
        Path(a.out).write_bytes(reg.transparent_statement)
    from verifier.statement import SignedStatement
    cwt_sub = SignedStatement.parse(reg.transparent_statement).sub
    print(json.dumps({"entry": ref.uri, "leaf_sha256": ref.leaf_sha256, "statement": a.out, "private": a.private,
                      "private_id": cwt_sub if a.private else None}, indent=2))
    return 0


def cmd_issue(a: argparse.Namespace) -> int:
    from .config import build_issuer

    from .provenance import WprRef

    iss = build_issuer(a.config)
    wpr = WprRef.from_transparent_statement(Path(a.workload_provenance).read_bytes(), iss.log_url) \
        if a.workload_provenance else None
    out = iss.issue(ear=Path(a.ear).read_text().strip(), workload_id=a.workload_id,
                    workload_key=_load_workload_key(a.workload_key), fmt=a.format, nonce=a.nonce, wpr=wpr,
                    binding=a.binding, renews=a.renews)
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    if out.credential.format == "wit":
        cred_path = d / "credential.wit"
        cred_path.write_bytes(out.credential.raw)
    else:
        cred_path = d / "credential.pem"
        cred_path.write_bytes(out.credential.cert.public_bytes(serialization.Encoding.PEM))
    (d / "cpr.scitt").write_bytes(out.registration.transparent_statement)
    print(json.dumps({"credential": str(cred_path), "record_id": out.rid, "record_statement": str(d / "cpr.scitt"),
                      "entry": out.registration.entry_url, "locator": iss.record_locator(out.rid),
                      "private": out.private, "status": out.appraisal.status, "binding": a.binding,
                      "prev": out.record.get("prev")}, indent=2))
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from .appraisal import VerifierKeys
    from .client import ScrapiClient
    from .replay import replay

    record = None
    if a.config:
        from .config import _path, build_issuer, load_config
        iss = build_issuer(a.config)
        cfg, base = load_config(a.config)
        client, issuer_key = iss.client, iss.identity.key.public_key()
        vk = VerifierKeys.load(a.verifier_keys or _path(base, cfg["verifier_keys"]))
        if iss.vault is not None and iss.vault.path(a.rid).is_file():
            record = iss.vault.get(a.rid)
    elif a.log and a.issuer_key and a.verifier_keys:
        client = ScrapiClient(a.log)
        issuer_key = next(iter(vkeys.load_public_keys(a.issuer_key).values()))
        vk = VerifierKeys.load(a.verifier_keys)
    else:
        print("give --config, or --log, --issuer-key and --verifier-keys", file=sys.stderr)
        return 2
    log_keys = vkeys.load_public_keys(a.log_key) if a.log_key else client.keys()
    rep = replay(a.rid, client=client, log_keys=log_keys, issuer_key=issuer_key, verifier_keys=vk, record=record)
    print(json.dumps(rep, indent=2, default=str))
    return 0 if not rep["discrepancies"] else 1


def cmd_revoke(a: argparse.Namespace) -> int:
    from .config import build_issuer

    iss = build_issuer(a.config)
    status, reg = iss.revoke(rid=a.record, credential=Path(a.credential).read_bytes() if a.credential else None,
                             reason=a.reason)
    if a.out:
        Path(a.out).write_bytes(reg.transparent_statement)
    print(json.dumps({"record_id": status["rid"], "status": status["status"], "time": status["time"],
                      "reason": status.get("reason"), "entry": reg.entry_url, "statement": a.out}, indent=2))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from .config import build_issuer
    from .http import create_app

    create_app(build_issuer(a.config)).run(host=a.host, port=a.port, threaded=True)
    return 0


def cmd_audit(a: argparse.Namespace) -> int:
    from verifier import cbor as vcbor
    from verifier.credential import decrypt_record

    if a.config:
        from .config import build_issuer
        iss = build_issuer(a.config)
        if iss.vault is None:
            print("no vault configured", file=sys.stderr)
            return 2
        if a.print_key:
            print(iss.auditor_key(a.rid).hex())
            return 0
        plain = iss.vault.get(a.rid)
    elif a.record and a.key:
        plain = decrypt_record(Path(a.record).read_bytes(), bytes.fromhex(a.key), a.rid)
    else:
        print("give --config, or --record and --key", file=sys.stderr)
        return 2

    def jsonable(o):
        if isinstance(o, bytes):
            return b64url(o)
        if isinstance(o, dict):
            return {str(k): jsonable(v) for k, v in o.items()}
        if isinstance(o, list):
            return [jsonable(v) for v in o]
        return o

    try:
        doc = vcbor.loads(plain)
    except VerificationError:
        doc = json.loads(plain)  # a private Workload Provenance document (JSON)
    print(json.dumps(jsonable(doc), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twi-issuer", description="TWI credential issuer with provenance in a SCITT log")
    sub = p.add_subparsers(dest="cmd", required=True)

    k = sub.add_parser("keys", help="create an issuer key, CA, vault key, default policies and issuer.json")
    k.add_argument("--dir", required=True)
    k.add_argument("--issuer-id", required=True, help="the issuer's URL (iss)")
    k.add_argument("--log-url", default="http://127.0.0.1:8000")
    k.add_argument("--verifier-developer", default="https://veraison-project.org")
    k.add_argument("--ca-name", default="TWI Issuing CA")
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=cmd_keys)

    ap = sub.add_parser("appraise", help="verify and appraise an EAR (application/eat+jwt)")
    ap.add_argument("--ear", required=True)
    ap.add_argument("--config")
    ap.add_argument("--policy")
    ap.add_argument("--verifier-keys")
    ap.add_argument("--nonce")
    ap.set_defaults(func=cmd_appraise)

    w = sub.add_parser("register-workload-provenance", help="register a Workload Provenance statement")
    w.add_argument("--config", required=True)
    w.add_argument("--workload-id", required=True)
    w.add_argument("--artifact", action="append", default=[], required=True, metavar="NAME=sha256:HEX")
    w.add_argument("--sbom", action="append", default=[], metavar="FILE", help="CycloneDX or SPDX JSON")
    w.add_argument("--slsa", action="append", default=[], metavar="FILE", help="in-toto SLSA provenance v1")
    w.add_argument("--compliance", action="append", default=[], metavar="FILE[:MEDIATYPE]")
    w.add_argument("--vendor", action="append", default=[], metavar="NAME")
    w.add_argument("--out", help="write the transparent statement here")
    w.add_argument("--private", action="store_true",
                   help="log only the statement's hash (RFC 9995 hash envelope); the document stays in the "
                        "issuer's vault (twi-issuer audit --rid PRIVATE_ID)")
    w.set_defaults(func=cmd_register_wpr)

    i = sub.add_parser("issue", help="appraise, mint a credential, register its provenance")
    i.add_argument("--config", required=True)
    i.add_argument("--ear", required=True)
    i.add_argument("--workload-id", required=True)
    i.add_argument("--workload-key", required=True, help="public JWK (with alg) or PEM")
    i.add_argument("--format", choices=["wit", "x509-svid"], default="wit")
    i.add_argument("--nonce")
    i.add_argument("--workload-provenance", metavar="FILE",
                   help="link this Workload Provenance (its transparent statement) instead of the one registered "
                        "for the workload; it must name the same workload")
    i.add_argument("--binding", choices=["internal", "external"], default="internal",
                   help="internal: the credential carries the pointer to its record; external: it does not, "
                        "relying parties find the record by (iss, jti) / (issuer DN, serial) / SHA-256")
    i.add_argument("--renews", metavar="RID", help="record id of the credential this one renews (linked as prev)")
    i.add_argument("--out", required=True, help="output directory")
    i.set_defaults(func=cmd_issue)

    rp = sub.add_parser("replay", help="audit: replay the appraisal of a logged record under its logged policy")
    rp.add_argument("--rid", required=True, help="the record id")
    rp.add_argument("--config", help="issuer configuration (its log, key, verifier keys, vault)")
    rp.add_argument("--log", metavar="URL", help="the log (auditor without the issuer's configuration)")
    rp.add_argument("--issuer-key", metavar="FILE", help="the issuer's public key")
    rp.add_argument("--verifier-keys", metavar="FILE", help="the RATS Verifier keys the auditor trusts")
    rp.add_argument("--log-key", metavar="FILE", help="pinned log keys (default: fetched from the log)")
    rp.set_defaults(func=cmd_replay)

    rv = sub.add_parser("revoke", help="register a signed status statement revoking a credential's record")
    rv.add_argument("--config", required=True)
    g = rv.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="RID", help="the record id")
    g.add_argument("--credential", metavar="FILE", help="the credential (WIT or PEM/DER certificate)")
    rv.add_argument("--reason", metavar="TEXT")
    rv.add_argument("--out", metavar="FILE", help="write the transparent status statement here (offline checks)")
    rv.set_defaults(func=cmd_revoke)

    s = sub.add_parser("serve", help="HTTP issuing endpoint (GET /challenge, POST /issue)")
    s.add_argument("--config", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8100)
    s.set_defaults(func=cmd_serve)

    au = sub.add_parser("audit", help="open a private Credential Provenance record or Workload Provenance document")
    au.add_argument("--rid", required=True)
    au.add_argument("--config")
    au.add_argument("--print-key", action="store_true", help="print the record key to hand to an auditor")
    au.add_argument("--record")
    au.add_argument("--key")
    au.set_defaults(func=cmd_audit)

    from .devtools import add_commands  # sign, dev-verifier

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IssuerError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2 if e.check.startswith("config.") else 1
    except VerificationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
