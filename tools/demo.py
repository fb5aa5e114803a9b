#!/usr/bin/env python3
"""TWI provenance, end to end, in one command:  python3 tools/demo.py

1. starts a transparency log (``python -m tlog.cli serve``) on a temporary directory;
2. plays a RATS Verifier: signs an attestation result (EAR) for a workload;
3. the issuer appraises the EAR against its appraisal policy;
4. registers the workload's provenance (in-toto statement naming its image and SBOM);
5. issues a WIT whose pointer names a pre-allocated provenance record, and registers that
   Credential Provenance record in the log (the WIT is released only after the receipt);
6. verifies the credential as a relying party would (offline: signatures, receipts, both
   directions of the binding, SBOM present, status affirming);
7. shows refusals: a tampered credential, a credential swapped for another, and a
   contraindicated EAR (no credential issued at all).

Options: ``--keep`` keeps the temporary directory; ``--log-url`` uses a running log instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LogServer:
    """``python -m tlog.cli serve`` in a subprocess on a free port, stopped by its own pid."""

    def __init__(self, data_dir: Path, issuer_pub: Path, iss: str, *, workers: int = 1, threads: int = 8,
                 extra: list[str] | None = None):
        """``issuer_pub``: the issuer's public key the log trusts, for the issuer identity ``iss``."""
        import json
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = open(data_dir.parent / "tlog.out", "ab")
        cmd = [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port),
               "--issuer-key", json.dumps({"path": str(issuer_pub), "iss": [iss]}), "--workers", str(workers), "--threads", str(threads)] + (extra or [])
        self.proc = subprocess.Popen(cmd, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=self.logfile, stderr=subprocess.STDOUT, start_new_session=True)
        import requests

        deadline = time.monotonic() + 40
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the log exited: " + (data_dir.parent / "tlog.out").read_text()[-2000:])
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the log did not start within 40 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)  # the process group this Popen created
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.logfile.close()


def say(step: str, text: str) -> None:
    print(f"\n== {step}")
    print(textwrap.fill(text, 96, initial_indent="   ", subsequent_indent="   "))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--log-url", help="use this running log (its --issuer-key must trust <dir>/issuer.pub.pem)")
    args = ap.parse_args(argv)

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from jwt.algorithms import ECAlgorithm

    from issuer import IssuerError
    from issuer.appraisal import AppraisalPolicy, VerifierKeys, appraise
    from issuer.client import ScrapiClient
    from issuer.credentials import make_ca, mint_wit, public_jwk
    from issuer.provenance import IssuerIdentity, sbom_descriptor, workload_provenance
    from issuer.service import IssuancePolicy, Issuer
    from verifier import VerificationError
    from verifier import keys as vkeys
    from verifier.credential import (ATTESTED_ARTIFACTS_CLAIM, AllOf, MaxRecordAge, SbomPresent, StatusAffirming,
                                     TrustConfig, fetch_external, fetch_statements, load_verifier_keys,
                                     verify_credential)

    tmp = Path(tempfile.mkdtemp(prefix="twi-demo-"))
    server = None
    try:
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        pub = tmp / "issuer.pub.pem"
        pub.write_bytes(issuer_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
        if args.log_url:
            log_url = args.log_url.rstrip("/")
            say("1. log", f"Using the running log at {log_url}.")
        else:
            server = LogServer(tmp / "log", pub, "https://issuer.demo")
            log_url = server.url
            say("1. log", f"Started a transparency log at {log_url} (data in {tmp / 'log'}). It admits "
                "Signed Statements only from the issuer key it was told to trust, and answers each "
                "registration with a COSE receipt: a signed Merkle inclusion proof.")

        # -- a RATS Verifier (played here) and its attestation result for the workload
        vkey = ec.generate_private_key(ec.SECP256R1())
        vjwk = ECAlgorithm.to_jwk(vkey.public_key(), as_dict=True)
        vjwk["alg"] = "ES256"
        verifier_id = {"developer": "https://verifier.demo", "build": "demo-verifier 1.0"}
        workload_key = ed25519.Ed25519PrivateKey.generate()
        wid = "spiffe://prod.demo/payments"

        akpub = jwt.utils.base64url_encode(workload_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
        image_digest = {"sha256": "5e" * 32}

        def ear(status: str, nonce: str) -> str:
            # the EAR echoes the issuer's challenge (eat_nonce), attests the workload key
            # (ear.veraison.key-attestation) and the measured image (example.org/twi_artifacts)
            return jwt.encode({
                "eat_profile": "tag:ietf.org,2026:rats/ear#03", "iat": int(time.time()),
                "ear_verifier_id": verifier_id, "eat_nonce": nonce,
                "submods": {"tdx-td": {"ear_status": status,
                                       "ear_trustworthiness_vector": {"instance-identity": 2, "executables": 2,
                                                                      "hardware": 2, "configuration": 2},
                                       "ear_appraisal_policy_ids": ["https://verifier.demo/policy/tdx/7"],
                                       "ear.veraison.key-attestation": {"akpub": akpub},
                                       ATTESTED_ARTIFACTS_CLAIM: [{"name": "oci:registry.demo/payments",
                                                                   "digest": image_digest}]}},
            }, vkey, algorithm="ES256", headers={"typ": "JWT"})

        policy = AppraisalPolicy.from_obj({
            "id": "https://issuer.demo/policies/appraisal/1",
            "allowed_verifiers": [{"developer": "https://verifier.demo"}],
            "submods": {"*": {"status": "affirming", "trust_vector": {"executables": "affirming", "hardware": "affirming"}}},
            "allowed_appraisal_policy_ids": ["https://verifier.demo/policy/tdx/7"], "max_age": 300})
        vkeys_obj = {"verifiers": [{"id": verifier_id, "keys": [vjwk]}]}
        nonce = jwt.utils.base64url_encode(os.urandom(16)).decode()  # the issuer's challenge
        good_ear = ear("affirming", nonce)
        a = appraise(good_ear, policy, VerifierKeys.from_obj(vkeys_obj), nonce=nonce)
        say("2. appraise", f"The Verifier {verifier_id['developer']} signed an attestation result (EAR) for the "
            f"workload's TEE. The issuer checked the signature with the Verifier's key and applied its "
            f"appraisal policy: status {a.status}, trust vector thresholds met, fresh, policy "
            f"{a.policy_id} (sha256 {a.policy_digest[:16]}...). This proves the workload was attested by a "
            f"Verifier the issuer trusts, recently, with an acceptable result, in answer to the issuer's own "
            f"challenge (no replay), for the workload key it attests and the image digest it measured.")

        client = ScrapiClient(log_url)
        issuer = Issuer(identity=IssuerIdentity("https://issuer.demo", issuer_key), log_url=log_url,
                        appraisal_policy=policy, verifier_keys=VerifierKeys.from_obj(vkeys_obj),
                        issuance_policy=IssuancePolicy.from_obj({"id": "https://issuer.demo/policies/issuance/1",
                                                                 "credential_lifetime": 900,
                                                                 "require_workload_provenance": True}),
                        client=client, ca_cert=make_ca(issuer_key))

        sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [
            {"type": "library", "name": "openssl", "version": "3.5.1"}]}).encode()
        wpr = workload_provenance(workload_id=wid,
                                  subjects=[{"name": "oci:registry.demo/payments", "digest": image_digest}],
                                  composition=[sbom_descriptor(sbom, uri="https://sbom.demo/payments.cdx.json")],
                                  vendor=[{"name": "ACME", "role": "software-vendor"}])
        ref, wreg = issuer.register_workload_provenance(wpr)
        say("3. workload provenance", f"Registered the workload's provenance (an in-toto statement naming its "
            f"image by digest and its CycloneDX SBOM by digest and media type) as log entry {wreg.index}. "
            f"The receipt proves the log holds it and cannot later deny or change it.")

        out = issuer.issue(ear=good_ear, workload_id=wid, workload_key=workload_key.public_key(), nonce=nonce)
        cred = out.credential
        say("4. issue", f"Issued a WIT for {wid} (jti {cred.jti}). Before minting, the issuer pre-allocated "
            f"record id {out.rid} and put it, with the log's URL, into the WIT (claim example.org/twi_prov). "
            f"The Credential Provenance record - the WIT's SHA-256 and jti, the Verifier, the EAR's digest, "
            f"the appraisal and issuance policies with their digests, and the workload provenance entry - was "
            f"signed and registered as log entry {out.registration.index}; only after its receipt verified "
            f"was the WIT released.")

        import requests
        fetched = requests.get(f"{out.registration.entry_url}/statement", timeout=10)
        statements = [fetched.content if fetched.status_code == 200 else out.registration.transparent_statement,
                      wreg.transparent_statement]
        trust = TrustConfig(log_keys=client.keys(),
                            issuer_keys={vkeys.thumbprint(issuer_key): issuer_key.public_key()},
                            verifier_keys=load_verifier_keys(vkeys_obj))
        rp_policy = AllOf([StatusAffirming(), SbomPresent(), MaxRecordAge(600)])
        res = verify_credential(cred.raw, statements, trust, policy=rp_policy)
        say("5. relying party: accepted", f"With only the log's key, the issuer's key and the Verifier's key, "
            f"a relying party checked offline: the WIT's signature; the record's signature and its receipt "
            f"(entry {res.receipts[0].info.index} of a tree of {res.receipts[0].info.size}); that the WIT "
            f"points at this record and the record names this WIT's SHA-256 and jti; the embedded EAR's "
            f"signature ({'verified' if res.ear_verified else 'not verified'}); and its own policy: status "
            f"affirming, an SBOM in the logged workload provenance, record younger than 10 minutes.")
        lk = requests.get(f"{log_url}/twi/v1/cpr", params={"rid": out.rid}, timeout=10)
        if lk.status_code == 200:
            say("   lookup", f"The log also returns the record by its id at {log_url}/twi/v1/cpr?rid=... "
                "(and by iss+jti or the credential's SHA-256).")
        else:
            say("   lookup", f"This log build does not serve /twi/v1/cpr yet (HTTP {lk.status_code}); the "
                "record was fetched as /entries/<id>/statement instead.")

        # -- refusals
        h, p, s = cred.raw.decode().split(".")
        claims = json.loads(jwt.utils.base64url_decode(p))
        claims["sub"] = "spiffe://prod.demo/admin"
        tampered = f"{h}.{jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()}.{s}".encode()
        refused = 0
        try:
            verify_credential(tampered, statements, trust, policy=rp_policy)
        except VerificationError as e:
            refused += 1
            say("6. tampered credential: refused", f"Someone changed the WIT's subject to spiffe://prod.demo/admin. "
                f"Refused with '{e.check}': {e.detail}. The issuer's signature no longer matches.")
        other = mint_wit(issuer_key, iss="https://issuer.demo", sub=wid, cnf_jwk=public_jwk(workload_key),
                         pointer=cred.pointer)
        try:
            verify_credential(other.raw, statements, trust, policy=rp_policy)
        except VerificationError as e:
            refused += 1
            say("7. record replayed for another credential: refused", f"A second, validly signed WIT that points "
                f"at the same record was refused with '{e.check}': {e.detail}. The record names exactly one "
                f"credential, by digest and jti.")
        try:
            n2 = jwt.utils.base64url_encode(os.urandom(16)).decode()
            issuer.issue(ear=ear("contraindicated", n2), workload_id=wid, workload_key=workload_key.public_key(),
                         nonce=n2)
        except IssuerError as e:
            refused += 1
            say("8. contraindicated attestation: nothing issued", f"The Verifier reported the TEE as "
                f"contraindicated; the issuer refused with '{e.check}' before minting anything, so no "
                f"credential and no record exist.")
        # -- external binding: a credential without the pointer, found by its identifiers
        n3 = jwt.utils.base64url_encode(os.urandom(16)).decode()
        ext = issuer.issue(ear=ear("affirming", n3), workload_id=wid, workload_key=workload_key.public_key(),
                           nonce=n3, binding="external")
        ext_trust = TrustConfig(**{**trust.__dict__, "logs": [log_url]})
        found = fetch_external(log_url, ext.credential, policies=True)
        res = verify_credential(ext.credential.raw, found, ext_trust, policy=rp_policy, check_policies=True)
        say("9. external binding: accepted", f"A second WIT was issued without the provenance pointer (an "
            f"unchanged WIT format). The relying party, naming the log itself, looked the record up by the "
            f"WIT's (iss, jti) at {log_url}/twi/v1/cpr, verified it and checked that it names this WIT's "
            f"SHA-256 and jti; it also checked that the appraisal and issuance policies the record references "
            f"({', '.join(sorted(res.policies))}) are logged by the issuer with the digests the record carries.")
        twin = mint_wit(issuer_key, iss="https://issuer.demo", sub=wid, cnf_jwk=public_jwk(ed25519.Ed25519PrivateKey.generate()),
                        pointer=None, jti=ext.credential.jti)
        try:
            verify_credential(twin.raw, fetch_external(log_url, twin), ext_trust, policy=rp_policy)
        except VerificationError as e:
            refused += 1
            say("10. a credential reusing a logged jti: refused", f"A validly signed WIT without a pointer, "
                f"reusing that jti for another key, found the logged record for (iss, jti), which names "
                f"another credential: '{e.check}'.")

        # -- revocation in the log
        status, sreg = issuer.revoke(rid=out.rid, reason="workload decommissioned")
        try:
            verify_credential(cred.raw, fetch_statements(cred.pointer), trust, policy=rp_policy)
        except VerificationError as e:
            refused += 1
            say("11. revoked: refused", f"The issuer registered a signed status statement for record {out.rid} "
                f"(log entry {sreg.index}). The log's lookup now returns it with the record, and the relying "
                f"party refused the first WIT with '{e.check}': {e.detail}. A relying party that did not fetch "
                f"cannot know: the absence of a status entry proves nothing beyond the answer it received.")
        print()
        if refused != 5:
            print("DEMO FAILED: a refusal did not happen")
            return 1
        print("Demo complete: two credentials accepted (internal and external binding), five refusals "
              "(tampering, a replayed record, a contraindicated attestation, a reused jti, a revocation).")
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
