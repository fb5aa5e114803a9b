"""``twi-issuer sign`` and ``twi-issuer dev-verifier``: make statements and attestation results by hand.

    twi-issuer sign FILE --config issuer.json --content-type TYPE [--subject SUB] --out statement.cose
    twi-issuer dev-verifier init --dir DIR [--developer URL] [--trust-in issuer.json]
    twi-issuer dev-verifier workload-key --out workload-key.pem
    twi-issuer dev-verifier ear --dir DIR [--status affirming] [--nonce N] [--workload-key PEM]
                                [--artifact NAME=sha256:HEX ...] [--out ear.jwt]

``sign`` wraps any file as a SCITT Signed Statement (COSE_Sign1, ES256, ``kid`` = the issuer key's
RFC 9679 thumbprint, CWT claims ``iss`` = issuer_id, ``sub``, ``iat``), ready for
``tlog register``.

``dev-verifier`` is a development RATS Verifier, for trying the issuance flow without a real one
(Veraison and the like): ``init`` makes its ES256 key and the public entry an issuer trusts
(``verifier-keys.json``, the format of :class:`issuer.appraisal.VerifierKeys`); with ``--trust-in``
it also adds that entry to the issuer's verifier keys and its developer to the issuer's appraisal
policy (``allowed_verifiers``), saying so. ``ear`` mints an EAR (``application/eat+jwt``, profile
``tag:ietf.org,2026:rats/ear#03``) for one attester, every trustworthiness claim the issuer's
default policy looks at set to the status asked; ``--nonce`` echoes the issuer's challenge
(``eat_nonce``, required by the default appraisal policy), ``--workload-key`` attests the workload's
key (``ear.veraison.key-attestation``, required by the default issuance policy) and ``--artifact``
the measured images (``workload-key`` makes a development workload key pair). Nothing here attests anything: use it only on a development issuer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import IssuerError

DEV_DEVELOPER = "https://dev-verifier.invalid"  # RFC 2606 .invalid: visibly not a real Verifier
EAR_PROFILE = "tag:ietf.org,2026:rats/ear#03"
# AR4SI trustworthiness values (draft-ietf-rats-ar4si): 2 affirming, 32 warning, 96 contraindicated
_TIER = {"affirming": 2, "warning": 32, "contraindicated": 96}


def _write_new(path: Path, data: bytes, mode: int) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def verifier_entry(key: ec.EllipticCurvePrivateKey, developer: str, build: str) -> dict:
    from jwt.algorithms import ECAlgorithm

    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk["alg"] = "ES256"
    return {"id": {"developer": developer, "build": build}, "keys": [jwk]}


def init(directory: str | Path, developer: str = DEV_DEVELOPER, build: str = "twi-issuer dev-verifier") -> dict:
    """Make the development Verifier's key and ``verifier-keys.json`` in ``directory``."""
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (d / "verifier.pem").exists():
        raise IssuerError("config.exists", f"{d / 'verifier.pem'} exists: a development Verifier is already there")
    key = ec.generate_private_key(ec.SECP256R1())
    _write_new(d / "verifier.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), 0o600)
    entry = verifier_entry(key, developer, build)
    _write_new(d / "verifier-keys.json", (json.dumps({"verifiers": [entry]}, indent=2) + "\n").encode(), 0o644)
    return entry


def _load(directory: str | Path) -> tuple[ec.EllipticCurvePrivateKey, dict]:
    d = Path(directory)
    try:
        key = serialization.load_pem_private_key((d / "verifier.pem").read_bytes(), None)
        entry = json.loads((d / "verifier-keys.json").read_text())["verifiers"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise IssuerError("config.read", f"no development Verifier in {d} (twi-issuer dev-verifier init): {e}") from None
    return key, entry


def trust_in(directory: str | Path, issuer_config: str | Path) -> list[str]:
    """Add the development Verifier to an issuer's verifier keys and appraisal policy; what changed."""
    from .config import _path, load_config

    _, entry = _load(directory)
    cfg, base = load_config(issuer_config)
    changed = []
    vk_path = _path(base, cfg["verifier_keys"])
    vk = json.loads(vk_path.read_text()) if vk_path.exists() else {"verifiers": []}
    if entry not in vk.setdefault("verifiers", []):
        vk["verifiers"].append(entry)
        vk_path.write_text(json.dumps(vk, indent=2) + "\n")
        changed.append(f"{vk_path}: added the key of {entry['id']['developer']}")
    pol_path = _path(base, cfg["appraisal_policy"])
    pol = json.loads(pol_path.read_text())
    if not any(v.get("developer") == entry["id"]["developer"] for v in pol.get("allowed_verifiers", [])):
        pol.setdefault("allowed_verifiers", []).append({"developer": entry["id"]["developer"]})
        pol_path.write_text(json.dumps(pol, indent=2) + "\n")
        changed.append(f"{pol_path}: allowed_verifiers += {entry['id']['developer']}")
    return changed


def mint_ear(directory: str | Path, *, status: str = "affirming", nonce: str | None = None,
             workload_key=None, artifacts: list[dict] | None = None, submod: str = "dev-attester",
             iat: int | None = None) -> str:
    """An EAR JWT signed by the development Verifier in ``directory`` (``workload_key``: the
    attested public key; ``artifacts``: [{"name", "digest": {alg: hex}}] measured)."""
    import jwt

    from verifier.credential import ATTESTED_ARTIFACTS_CLAIM

    from .appraisal import TRUST_CLAIMS

    if status not in _TIER:
        raise IssuerError("config.status", f"status must be one of {', '.join(_TIER)}")
    key, entry = _load(directory)
    claims = {
        "eat_profile": EAR_PROFILE, "iat": int(time.time()) if iat is None else int(iat),
        "ear_verifier_id": entry["id"],
        "submods": {submod: {"ear_status": status,
                             "ear_trustworthiness_vector": {c: _TIER[status] for c in TRUST_CLAIMS
                                                            if c in ("instance-identity", "configuration",
                                                                     "executables", "hardware")}}},
    }
    if nonce is not None:
        claims["eat_nonce"] = nonce
    if workload_key is not None:
        spki = workload_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        claims["submods"][submod]["ear.veraison.key-attestation"] = {"akpub": jwt.utils.base64url_encode(spki).decode()}
    if artifacts:
        claims["submods"][submod][ATTESTED_ARTIFACTS_CLAIM] = list(artifacts)
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "application/eat+jwt"})


def sign_file(config: str | Path, data: bytes, content_type: str, subject: str | None) -> bytes:
    """``data`` as a Signed Statement of the issuer in ``config``."""
    from verifier import cose as vcose

    from .config import _path, load_config, load_private_key
    from .provenance import IssuerIdentity

    cfg, base = load_config(config)
    ident = IssuerIdentity(cfg["issuer_id"], load_private_key(_path(base, cfg["key"])))
    prot = {3: content_type, 4: ident.kid, 15: {1: ident.id, 2: subject or ident.id, 6: int(time.time())}}
    return vcose.sign1(ident.key, prot, data)


def load_workload_key(path: str):
    """A workload's public key from a JWK (JSON), a PEM public key or a PEM private key."""
    from .appraisal import public_key_from_jwk

    raw = Path(path).read_bytes()
    if raw.lstrip().startswith(b"{"):
        return public_key_from_jwk(json.loads(raw))
    try:
        return serialization.load_pem_public_key(raw)
    except ValueError:
        return serialization.load_pem_private_key(raw, None).public_key()


# ---- CLI ------------------------------------------------------------------------------------
def cmd_sign(a: argparse.Namespace) -> int:
    data = Path(a.file).read_bytes()
    Path(a.out).write_bytes(sign_file(a.config, data, a.content_type, a.subject))
    print(json.dumps({"statement": a.out, "bytes": Path(a.out).stat().st_size}))
    return 0


def cmd_dev_init(a: argparse.Namespace) -> int:
    entry = init(a.dir, a.developer)
    out = {"verifier": entry["id"], "keys": str(Path(a.dir) / "verifier-keys.json")}
    if a.trust_in:
        out["changed"] = trust_in(a.dir, a.trust_in)
    print(json.dumps(out, indent=2))
    return 0


def cmd_dev_workload_key(a: argparse.Namespace) -> int:
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        _write_new(Path(a.out), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
    except FileExistsError:
        raise IssuerError("config.exists", f"{a.out} exists") from None
    print(json.dumps({"workload_key": a.out}))
    return 0


def cmd_dev_ear(a: argparse.Namespace) -> int:
    artifacts = []
    for s in a.artifact:
        name, _, dg = s.rpartition("=")
        alg, _, hexv = dg.partition(":")
        if not name or not hexv:
            raise IssuerError("config.artifact", f"--artifact NAME=ALG:HEX, got {s!r}")
        artifacts.append({"name": name, "digest": {alg: hexv.lower()}})
    key = load_workload_key(a.workload_key) if a.workload_key else None
    token = mint_ear(a.dir, status=a.status, nonce=a.nonce, workload_key=key, artifacts=artifacts)
    if a.out:
        Path(a.out).write_text(token + "\n")
    else:
        sys.stdout.write(token + "\n")
    return 0


def add_commands(sub) -> None:
    s = sub.add_parser("sign", help="wrap a file as a Signed Statement (COSE_Sign1) of this issuer")
    s.add_argument("file")
    s.add_argument("--config", required=True, help="issuer.json (twi-issuer keys)")
    s.add_argument("--content-type", required=True, help="the payload's media type, e.g. application/spdx+json")
    s.add_argument("--subject", help="CWT sub (default: the issuer id)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_sign)

    d = sub.add_parser("dev-verifier", help="a development RATS Verifier: keys and EARs for trying the flow")
    dsub = d.add_subparsers(dest="dev_cmd", required=True)
    i = dsub.add_parser("init", help="make the Verifier's key and verifier-keys.json")
    i.add_argument("--dir", required=True)
    i.add_argument("--developer", default=DEV_DEVELOPER, help=f"ear.verifier-id developer (default {DEV_DEVELOPER})")
    i.add_argument("--trust-in", metavar="ISSUER_JSON",
                   help="add it to this issuer's verifier keys and appraisal policy (development only)")
    i.set_defaults(func=cmd_dev_init)
    w = dsub.add_parser("workload-key", help="make a development workload key pair (P-256, PEM, 0600)")
    w.add_argument("--out", required=True)
    w.set_defaults(func=cmd_dev_workload_key)
    e = dsub.add_parser("ear", help="mint an attestation result (EAR JWT)")
    e.add_argument("--dir", required=True)
    e.add_argument("--status", choices=sorted(_TIER), default="affirming")
    e.add_argument("--nonce", help="the issuer's challenge to echo (eat_nonce)")
    e.add_argument("--workload-key", metavar="PEM|JWK", help="the workload's key to attest (key-attestation)")
    e.add_argument("--artifact", action="append", default=[], metavar="NAME=sha256:HEX",
                   help="a measured artefact (repeatable)")
    e.add_argument("--out", help="write the EAR here (default: stdout)")
    e.set_defaults(func=cmd_dev_ear)
