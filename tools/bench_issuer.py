#!/usr/bin/env python3
"""End-to-end issuance benchmark: appraise EAR -> mint WIT -> build + sign CPR -> register over
SCRAPI -> verify receipt -> release; issuances/s and latency percentiles; then the relying
party's offline check (``verify_credential``: credential signature, record signature, receipt,
both directions of the binding, policy) of the issued credentials: verifications/s.

    python3 tools/bench_issuer.py [--n 400] [--concurrency 1,8,32] [--workers 2] [--threads 16]
                                  [--format wit|x509-svid] [--private] [--log-url URL] [--verify-n 400]

Starts ``python -m tlog.cli serve`` on a temporary directory (unless --log-url). EARs are signed
beforehand (that is the Verifier's cost, not the issuer's). Each concurrency level runs ``n``
issuances from that many threads sharing one Issuer (one requests session per thread).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--format", default="wit", choices=["wit", "x509-svid"])
    ap.add_argument("--private", action="store_true", help="private records (hash envelope + vault)")
    ap.add_argument("--log-url")
    ap.add_argument("--verify-n", type=int, default=400, help="credential verifications to time (0: none)")
    args = ap.parse_args(argv)

    import jwt
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from jwt.algorithms import ECAlgorithm

    from demo import LogServer
    from issuer.appraisal import AppraisalPolicy, VerifierKeys
    from issuer.client import ScrapiClient
    from issuer.credentials import make_ca
    from issuer.provenance import IssuerIdentity, RecordVault
    from issuer.service import IssuancePolicy, Issuer
    from verifier import keys as vkeys
    from verifier.credential import b64url

    tmp = Path(tempfile.mkdtemp(prefix="twi-bench-"))
    server = None
    try:
        ikey = ec.generate_private_key(ec.SECP256R1())
        pub = tmp / "issuer.pub.pem"
        pub.write_bytes(ikey.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
        if args.log_url:
            url = args.log_url.rstrip("/")
        else:
            server = LogServer(tmp / "log", pub, "https://issuer.bench", workers=args.workers, threads=args.threads)
            url = server.url
        vkey = ec.generate_private_key(ec.SECP256R1())
        vjwk = ECAlgorithm.to_jwk(vkey.public_key(), as_dict=True)
        vjwk["alg"] = "ES256"
        vid = {"developer": "https://verifier.bench", "build": "1"}
        policy = AppraisalPolicy.from_obj({"id": "urn:bench:appraisal", "allowed_verifiers": [{"developer": vid["developer"]}],
                                           "submods": {"*": {"trust_vector": {"hardware": "affirming"}}},
                                           "max_age": 3600})
        log_keys = ScrapiClient(url).keys()
        local = threading.local()

        def session_client() -> ScrapiClient:
            c = getattr(local, "client", None)
            if c is None:
                c = local.client = ScrapiClient(url, log_keys=log_keys, session=requests.Session())
            return c

        class PerThreadClient:
            def register(self, statement):
                return session_client().register(statement)

        issuer = Issuer(identity=IssuerIdentity("https://issuer.bench", ikey), log_url=url, appraisal_policy=policy,
                        verifier_keys=VerifierKeys.from_obj({"verifiers": [{"id": vid, "keys": [vjwk]}]}),
                        issuance_policy=IssuancePolicy.from_obj({"id": "urn:bench:issuance",
                                                                 "private_records": args.private}),
                        client=PerThreadClient(),  # type: ignore[arg-type]
                        ca_cert=make_ca(ikey), vault=RecordVault(tmp / "vault", b"\x05" * 32))
        wk = ed25519.Ed25519PrivateKey.generate().public_key()
        akpub = b64url(wk.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        results = []
        issued: list = []
        for conc in [int(c) for c in args.concurrency.split(",")]:
            now = int(time.time())
            ears = [jwt.encode({"eat_profile": "tag:ietf.org,2026:rats/ear#03", "iat": now, "ear_verifier_id": vid,
                                "jti": str(i), "eat_nonce": f"bench-nonce-{conc}-{i}",
                                "submods": {"tee": {"ear_status": "affirming",
                                                    "ear_trustworthiness_vector": {"hardware": 2},
                                                    "ear.veraison.key-attestation": {"akpub": akpub}}}},
                               vkey, algorithm="ES256") for i in range(args.n)]
            lat: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            it = iter(enumerate(ears))

            def worker():
                while True:
                    with lock:
                        item = next(it, None)
                    if item is None:
                        return
                    i, ear = item
                    t0 = time.perf_counter()
                    try:
                        out = issuer.issue(ear=ear, workload_id=f"spiffe://bench.test/w{conc}", workload_key=wk,
                                           fmt=args.format, nonce=f"bench-nonce-{conc}-{i}")
                    except Exception as e:  # counted, reported
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")
                        continue
                    d = time.perf_counter() - t0
                    with lock:
                        lat.append(d)
                        issued.append(out)

            threads = [threading.Thread(target=worker) for _ in range(conc)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            r = {"concurrency": conc, "n": args.n, "ok": len(lat), "errors": len(errors),
                 "issuances_per_s": round(len(lat) / wall, 1),
                 "p50_ms": round(1000 * statistics.median(lat), 2) if lat else None,
                 "p99_ms": round(1000 * pct(lat, 99), 2) if lat else None,
                 "max_ms": round(1000 * max(lat), 2) if lat else None}
            if errors:
                r["first_error"] = errors[0]
            results.append(r)
            print(json.dumps(r), flush=True)
        verification = None
        if args.verify_n and issued:
            from verifier.credential import TrustConfig, verify_credential

            trust = TrustConfig(log_keys=log_keys, issuer_keys={vkeys.thumbprint(ikey): ikey.public_key()},
                                ca_certs=[issuer.ca_cert], logs=[url])
            batch = [issued[i % len(issued)] for i in range(args.verify_n)]
            vt0 = time.perf_counter()
            for out in batch:
                verify_credential(out.credential.raw, [out.registration.transparent_statement], trust,
                                  record=out.record_bytes if out.private else None)
            vwall = time.perf_counter() - vt0
            verification = {"n": len(batch), "verifications_per_s": round(len(batch) / vwall, 1),
                            "mean_ms": round(1000 * vwall / len(batch), 2), "threads": 1}
            print(json.dumps({"verification": verification}), flush=True)
        print(json.dumps({"format": args.format, "private": args.private, "log_workers": args.workers,
                          "log_threads": args.threads, "results": results, "verification": verification}, indent=2))
        return 0 if all(r["errors"] == 0 for r in results) else 1
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
