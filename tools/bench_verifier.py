#!/usr/bin/env python3
"""Verifier throughput on one core, beside the bare `cryptography` ES256 verify baseline.

    python tools/bench_verifier.py [--seconds 2] [--rounds 3]

Measures, interleaved in rounds (the box is shared, so each figure is the best round and
the ratio to the baseline of the same run is what matters):
  - bare ES256 verify (cryptography, DER signature, pre-loaded key)
  - ES256 inclusion receipt verification (parse + proof + signature) over 128 distinct
    receipts, trees of ~1M and ~1,000 leaves; and with every protected header distinct
  - signed statement parse + ES256 verify (SignedStatement.parse + verify)
  - transparent statement check (one receipt) for reference
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cryptography  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from verifier import cose, keys, merkle, receipt, transparent  # noqa: E402
from verifier.statement import SignedStatement  # noqa: E402


def _rate(fn, items: list, seconds: float) -> float:
    """Operations per second of *process CPU time* (robust against other load on the box).

    ``fn`` is applied to each of ``items`` in turn (many distinct inputs, not one repeated).
    """
    n, t0 = 0, time.process_time()
    deadline = t0 + seconds
    while True:
        for x in items:
            fn(x)
        n += len(items)
        t = time.process_time()
        if t >= deadline:
            return n / (t - t0)


def _receipt_for(log_key, kid: bytes, leaf_input: bytes, size: int, index: int, iat: int = 1_700_000_000) -> bytes:
    """A receipt with a synthetic path of the right length; signed over the root it implies."""
    n = (index ^ (size - 1)).bit_length() + bin(index >> (index ^ (size - 1)).bit_length()).count("1")
    path = [hashlib.sha256(i.to_bytes(4, "big") + size.to_bytes(8, "big")).digest() for i in range(n)]
    root = merkle.root_from_inclusion_proof(index, size, merkle.leaf_hash(leaf_input), path)
    prot = receipt.receipt_protected(alg=-7, kid=kid, issuer="https://log.example", subject="log.example/1",
                                     iat=iat)
    sig = cose.sign_tbs(log_key, -7, cose.sig_structure(prot, root))
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(size, index, path)])


def _receipts(log_key, kid: bytes, leaf_input: bytes, sizes: list[int], per_size: int, *, distinct_iat: bool = False):
    """Distinct receipts: each tree size has its own iat (so its own protected header) and
    ``per_size`` different leaf indexes; every receipt has its own path, root and signature.
    With ``distinct_iat`` every receipt gets its own protected header (no decode reuse)."""
    out = []
    for k, size in enumerate(sizes):
        for j in range(per_size):
            index = (size * (2 * j + 1)) // (2 * per_size + 1) + k
            iat = 1_700_000_000 + (k * per_size + j if distinct_iat else k)
            out.append(_receipt_for(log_key, kid, leaf_input, size, index, iat))
    return out


def merkle_path(r: bytes) -> list:
    return receipt.Receipt.parse(r).proofs(receipt.VDP_INCLUSION)[0][2]


def _setup():
    log_key = ec.generate_private_key(ec.SECP256R1())
    iss_key = ec.generate_private_key(ec.SECP256R1())
    kid = keys.thumbprint(log_key)
    stmt = cose.sign1(iss_key, {1: -7, 3: "application/json", 4: keys.thumbprint(iss_key),
                                15: {1: "https://issuer.example", 2: "urn:example:workload/1"}},
                      b'{"provenance": "' + b"x" * 200 + b'"}')
    leaf_input = hashlib.sha256(cose.decode_sign1(stmt).statement_bytes()).digest()
    rcpt = _receipt_for(log_key, kid, leaf_input, 1_000_000, 123_457)
    ts = transparent.attach_receipts(stmt, [rcpt])
    return log_key, iss_key, kid, stmt, leaf_input, rcpt, ts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass
    log_key, iss_key, kid, stmt, leaf_input, rcpt, ts = _setup()
    log_pub, iss_pub = log_key.public_key(), iss_key.public_key()
    log_keys = {kid: log_pub}
    # bare baseline: 64 distinct messages and signatures, same key
    bare_items = []
    for i in range(64):
        data = b"benchmark message %d " % i * 10
        bare_items.append((log_key.sign(data, ec.ECDSA(hashes.SHA256())), data))
    algo = ec.ECDSA(hashes.SHA256())

    def bare(x) -> None:
        log_pub.verify(x[0], x[1], algo)

    # 16 tree sizes around 10^6 (20-21-hash paths) x 8 indexes = 128 distinct receipts
    big = _receipts(log_key, kid, leaf_input, [1_000_000 + 4_099 * k for k in range(16)], 8)
    big_nocache = _receipts(log_key, kid, leaf_input, [1_000_000 + 4_099 * k for k in range(16)], 8,
                            distinct_iat=True)
    small = _receipts(log_key, kid, leaf_input, [1_000 + 3 * k for k in range(16)], 8)
    assert len(set(big)) == len(big) == 128 and len(set(small)) == 128
    assert {len(merkle_path(r)) for r in big} <= {19, 20, 21}, {len(merkle_path(r)) for r in big}

    def rec(r) -> None:
        receipt.verify_inclusion_receipt(r, leaf_input, log_keys)

    def st(s) -> None:
        SignedStatement.parse(s).verify(iss_pub)

    def tsv(t) -> None:
        transparent.verify_transparent_statement(t, log_keys)

    # sanity: everything verifies before timing
    for fn, items in ((bare, bare_items), (rec, big), (rec, big_nocache), (rec, small), (st, [stmt]), (tsv, [ts])):
        for x in items:
            fn(x)
    cases = [("bare cryptography ES256 verify", bare, bare_items),
             ("ES256 inclusion receipt verify", rec, big),
             ("  same, every protected header distinct", rec, big_nocache),
             ("  same, trees of ~1,000 (10-hash paths)", rec, small),
             ("signed statement parse + ES256 verify", st, [stmt] * 64),
             ("transparent statement (1 receipt)", tsv, [ts] * 64)]
    best = {name: 0.0 for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, fn, items in cases:
            best[name] = max(best[name], _rate(fn, items, args.seconds))
    base = best[cases[0][0]]
    targets = {cases[1][0]: 8000, cases[4][0]: 7000}
    print(f"{'measurement':42} {'ops/s':>9} {'vs bare':>8} {'target':>8} {'scaled':>8}")
    for name, _, _ in cases:
        t = targets.get(name)
        # 'scaled': the figure if the bare verify ran at the nominal 12,000/s of this box
        scaled = best[name] / base * 12000
        print(f"{name:42} {best[name]:9.0f} {best[name] / base:8.2f} {t if t else '':>8} {scaled:8.0f}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    print(f"(pinned to {cpus} of {os.cpu_count()} cores, CPU time, best of {args.rounds} rounds x {args.seconds:g}s; "
          f"receipts: 128 distinct (16 tree sizes ~10^6 leaves, 20-21-hash paths, one protected header per size, "
          f"8 indexes each, all signatures distinct); Python {sys.version.split()[0]}, "
          f"cryptography {cryptography.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"'scaled' = ops/s if bare ran at 12,000/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
