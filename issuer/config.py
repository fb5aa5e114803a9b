"""Issuer configuration file (JSON or TOML) and building an :class:`Issuer` from it.

Keys (paths are relative to the configuration file)::

    issuer_id         "https://issuer.example"       the issuer's id (WIT iss, statements' iss)
    key               "issuer.pem"                   PEM private key (P-256 recommended)
    ca_cert           "ca.pem"                       CA certificate of that key (X.509 SVIDs), optional
    log_url           "http://127.0.0.1:8000"        the transparency log (SCRAPI)
    log_keys          "log-keys.cbor"                pinned log keys (optional; else fetched)
    appraisal_policy  "appraisal-policy.json"        docs/appraisal-policy.md
    verifier_keys     "verifier-keys.json"
    issuance_policy   "issuance-policy.json"
    vault_dir         "vault"                        encrypted private records
    vault_key         "vault.key"                    32-byte master key, hex
    state_dir         "state"                        workload provenance references
    vault_url         (optional) where auditors ask for private records
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from verifier import VerificationError
from verifier import keys as vkeys

from .appraisal import AppraisalPolicy, VerifierKeys
from .client import ScrapiClient
from .errors import IssuerError
from .provenance import IssuerIdentity, RecordVault, WprRef
from .service import IssuancePolicy, Issuer


def load_config(path: str | Path) -> tuple[dict[str, Any], Path]:
    p = Path(path)
    try:
        raw = p.read_bytes()
        cfg = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as e:
        raise IssuerError("config.read", f"cannot read {path}: {e}") from None
    for k in ("issuer_id", "key", "log_url", "appraisal_policy", "verifier_keys", "issuance_policy"):
        if k not in cfg:
            raise IssuerError("config.missing", f"{path}: {k!r} is required")
    return cfg, p.parent


def _path(base: Path, v: str) -> Path:
    q = Path(v)
    return q if q.is_absolute() else base / q


def load_private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise IssuerError("config.key", f"cannot read private key {path}: {e}") from None


def build_issuer(path: str | Path, *, client: ScrapiClient | None = None) -> Issuer:
    cfg, base = load_config(path)
    key = load_private_key(_path(base, cfg["key"]))
    ca = None
    if cfg.get("ca_cert"):
        try:
            ca = x509.load_pem_x509_certificate(_path(base, cfg["ca_cert"]).read_bytes())
        except (OSError, ValueError) as e:
            raise IssuerError("config.ca", str(e)) from None
    log_keys = None
    if cfg.get("log_keys"):
        try:
            log_keys = vkeys.load_public_keys(_path(base, cfg["log_keys"]))
        except VerificationError as e:
            raise IssuerError("config.log-keys", str(e)) from None
    vault = None
    if cfg.get("vault_dir") and cfg.get("vault_key"):
        try:
            mk = bytes.fromhex(_path(base, cfg["vault_key"]).read_text().strip())
        except (OSError, ValueError) as e:
            raise IssuerError("config.vault", str(e)) from None
        vault = RecordVault(_path(base, cfg["vault_dir"]), mk)
    iss = Issuer(identity=IssuerIdentity(cfg["issuer_id"], key), log_url=cfg["log_url"].rstrip("/"),
                 appraisal_policy=AppraisalPolicy.load(_path(base, cfg["appraisal_policy"])),
                 verifier_keys=VerifierKeys.load(_path(base, cfg["verifier_keys"])),
                 issuance_policy=IssuancePolicy.load(_path(base, cfg["issuance_policy"])),
                 client=client or ScrapiClient(cfg["log_url"], log_keys=log_keys),
                 ca_cert=ca, vault=vault, vault_url=cfg.get("vault_url"))
    state = _path(base, cfg.get("state_dir", "state")) / "wpr"
    if state.is_dir():
        for f in state.glob("*.json"):
            d = json.loads(f.read_text())
            iss._wpr[d["workload_id"]] = WprRef.from_json({"workload_id": d["workload_id"], **d})
    iss.state_dir = state  # type: ignore[attr-defined]
    iss.policy_state = _path(base, cfg.get("state_dir", "state")) / "policies.json"
    return iss


def save_wpr(iss: Issuer, workload_id: str, ref: WprRef) -> Path:
    state: Path = getattr(iss, "state_dir")
    state.mkdir(parents=True, exist_ok=True)
    f = state / (hashlib.sha256(workload_id.encode()).hexdigest()[:32] + ".json")
    f.write_text(json.dumps({**ref.to_json(), "workload_id": workload_id}))
    return f
