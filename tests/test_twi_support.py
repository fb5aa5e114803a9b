"""Helpers for the TWI issuer / relying-party tests (no tests here).

A test RATS Verifier (key + EAR minting in both claim generations), an in-process log (the
real tlog Flask app with the TWI wiring) reached through a requests-compatible session, and
an issuer configured against it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm

from issuer.appraisal import AppraisalPolicy, VerifierKeys
from issuer.client import ScrapiClient
from issuer.credentials import b64url, make_ca, spki_der
from issuer.provenance import IssuerIdentity, RecordVault
from issuer.service import IssuancePolicy, Issuer
from verifier.credential import ATTESTED_ARTIFACTS_CLAIM

VERIFIER_DEV = "https://verifier.test"
VERIFIER_BUILD = "v1"
LOG_URL = "https://log.test"


class TestVerifier:
    """A RATS Verifier that signs EARs."""

    __test__ = False

    def __init__(self, developer: str = VERIFIER_DEV, build: str = VERIFIER_BUILD):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.developer, self.build = developer, build
        self.jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwk["alg"] = "ES256"

    def keys_obj(self) -> dict:
        return {"verifiers": [{"id": {"developer": self.developer, "build": self.build}, "keys": [self.jwk]}]}

    def ear(self, *, status: str = "affirming", legacy: bool = False, iat: float | None = None,
            nonce: str | None = None, akpub: bytes | None = None, tv: dict | None = None,
            policy_id: str = "https://verifier.test/policy/1", submod: str = "cc-tee",
            top_status: str | None = None, exp: int | None = None, vid: dict | None = None,
            artifacts: list | None = None) -> str:
        iat = int(time.time()) if iat is None else iat
        tv = {"instance-identity": 2, "executables": 2, "hardware": 2} if tv is None else tv
        vid = vid or {"developer": self.developer, "build": self.build}
        if legacy:
            app: dict[str, Any] = {"ear.status": status, "ear.trustworthiness-vector": tv,
                                   "ear.appraisal-policy-id": policy_id}
            claims: dict[str, Any] = {"eat_profile": "tag:github.com,2023:veraison/ear", "iat": iat,
                                      "ear.verifier-id": vid, "submods": {submod: app}}
        else:
            app = {"ear_status": status, "ear_trustworthiness_vector": tv, "ear_appraisal_policy_ids": [policy_id]}
            claims = {"eat_profile": "tag:ietf.org,2026:rats/ear#03", "iat": iat, "ear_verifier_id": vid,
                      "submods": {submod: app}}
            if top_status:
                claims["ear_status"] = top_status
        if akpub is not None:
            app["ear.veraison.key-attestation"] = {"akpub": b64url(akpub)}
        if artifacts is not None:
            app[ATTESTED_ARTIFACTS_CLAIM] = artifacts
        if nonce is not None:
            claims["eat_nonce"] = nonce
        if exp is not None:
            claims["exp"] = exp
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": "JWT"})


def bound(verifier: "TestVerifier", workload_key, **kw) -> dict:
    """Issuance arguments on the safe path: an EAR carrying a fresh challenge (eat_nonce) and
    attesting ``workload_key`` (a public or private key object); pass as ``issue(**bound(...))``."""
    import secrets

    pub = workload_key.public_key() if hasattr(workload_key, "private_bytes") else workload_key
    nonce = kw.pop("nonce", None) or b64url(secrets.token_bytes(16))
    akpub = kw.pop("akpub", spki_der(pub))
    return {"ear": verifier.ear(nonce=nonce, akpub=akpub, **kw), "nonce": nonce, "workload_key": pub}


def policy_obj(**over) -> dict:
    p = {"id": "https://issuer.test/policies/ar/1", "allowed_verifiers": [{"developer": VERIFIER_DEV}],
         "submods": {"*": {"status": "affirming", "trust_vector": {"executables": "affirming", "hardware": "affirming"}}},
         "allowed_appraisal_policy_ids": ["https://verifier.test/policy/1"], "max_age": 300}
    p.update(over)
    return p


class FlaskSession:
    """Just enough of requests.Session over a Flask test client (for ScrapiClient)."""

    def __init__(self, app, base: str = LOG_URL, fail_first: list[int] | None = None, retry_after: str = "0"):
        self.client = app.test_client()
        self.base = base
        self.fail_first = list(fail_first or [])  # statuses to answer before passing through
        self.retry_after = retry_after
        self.calls: list[tuple[str, str, int]] = []

    def request(self, method, url, timeout=None, allow_redirects=False, data=None, headers=None, stream=False):
        import requests

        path = url[len(self.base):] if url.startswith(self.base) else url
        r = requests.Response()
        if self.fail_first:
            r.status_code = self.fail_first.pop(0)
            r.headers["Retry-After"] = self.retry_after
            r._content = b""
        else:
            resp = self.client.open(path, method=method, data=data, headers=headers or {})
            r.status_code = resp.status_code
            r._content = resp.get_data()
            for k, v in resp.headers.items():
                r.headers[k] = v
        r.url = url
        r.raw = _Raw(r)  # what stream=True readers (verifier.http.capped_response) read
        self.calls.append((method, path, r.status_code))
        return r


class _Raw:
    """The body of a FlaskSession response as a stream (read when first asked, so a test may
    still replace the response's content before)."""

    def __init__(self, resp) -> None:
        self._r, self._b = resp, None

    def read(self, n=-1, decode_content=False):
        if self._b is None:
            import io

            self._b = io.BytesIO(self._r._content or b"")
        return self._b.read(n)

    def close(self):
        pass

    def release_conn(self):
        pass


def write_pem_public(path: Path, key) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def twi_env(tmp_path):
    """A log app (real tlog server, TWI wired), an issuer configured against it, a verifier."""
    from tlog.config import Config
    from tlog.server import create_app
    from tlog.twi.routes import install

    issuer_key = ec.generate_private_key(ec.SECP256R1())
    pub = write_pem_public(tmp_path / "issuer.pub.pem", issuer_key)
    app = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(tmp_path / "log"),
        # the issuer key may also claim another identity: tests of a relying party that counts only
        # the credential issuer's records register statements under https://other.test with it
        issuer_keys=[{"path": str(pub), "iss": ["https://issuer.test", "https://other.test"]}],
        origin="log.test/twi", issuer=LOG_URL,
        register_wait=5.0)))
    install(app)
    verifier = TestVerifier()
    session = FlaskSession(app)
    client = ScrapiClient(LOG_URL, session=session, sleep=lambda s: None)
    identity = IssuerIdentity("https://issuer.test", issuer_key)
    iss = Issuer(identity=identity, log_url=LOG_URL,
                 appraisal_policy=AppraisalPolicy.from_obj(policy_obj()),
                 verifier_keys=VerifierKeys.from_obj(verifier.keys_obj()),
                 issuance_policy=IssuancePolicy.from_obj({"id": "https://issuer.test/policies/issuance/1"}),
                 client=client, ca_cert=make_ca(issuer_key),
                 vault=RecordVault(tmp_path / "vault", b"\x07" * 32))
    env = type("Env", (), {})()
    env.app, env.issuer, env.verifier, env.session, env.client = app, iss, verifier, session, client
    env.issuer_key, env.tmp = issuer_key, tmp_path
    env.log_keys = app.extensions["tlog.service"].keys.public_keys()
    env.workload_key = ed25519.Ed25519PrivateKey.generate()
    yield env
    app.extensions["tlog.service"].close()


def trust_for(env, **over):
    from verifier import keys as vkeys
    from verifier.credential import TrustConfig, load_verifier_keys

    t = dict(log_keys=env.log_keys, issuer_keys={vkeys.thumbprint(env.issuer_key): env.issuer_key.public_key()},
             ca_certs=[env.issuer.ca_cert], verifier_keys=load_verifier_keys(env.verifier.keys_obj()))
    t.update(over)
    return TrustConfig(**t)


def wpr_statement(env, sbom: bytes | None = None):
    from issuer.provenance import resource_descriptor, sbom_descriptor, workload_provenance

    sbom = sbom or json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}).encode()
    return workload_provenance(
        workload_id="spiffe://prod.test/payments",
        subjects=[{"name": "oci:registry.test/payments", "digest": {"sha256": "ab" * 32}}],
        composition=[sbom_descriptor(sbom, uri="https://sbom.test/payments.cdx.json")],
        compliance=[resource_descriptor(b"scan ok", "text/plain", name="scan")],
        vendor=[{"name": "ACME", "role": "software-vendor"}])


__all__ = ["TestVerifier", "policy_obj", "FlaskSession", "twi_env", "trust_for", "wpr_statement", "spki_der"]
