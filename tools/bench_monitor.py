#!/usr/bin/env python3
"""Benchmark of the monitor (issue 6 figures), one command:

    python tools/bench_monitor.py [--entries 1000000] [--workers 8] [--rounds 50]

1. Full audit at N entries: every entry bundle and hash tile fetched over loopback HTTP from a
   fixture tile server running in a separate process (tiles computed in memory with
   verifier.tiles, not the log server), every leaf hash, tile and the root recomputed.
   Also the same audit with tiles read in-process (no HTTP): the hashing/compare bound.
2. Monitor cost per new checkpoint: the log at N entries grows by k entries, the monitor polls
   (GET checkpoint, signature, tiles for the consistency proof, proof verification, state fsync).
3. ``--statements M`` (0 to skip): full audit with statements at M entries - a log whose entry 0
   is the log's registration-policy statement (tlog.policy, signed with the log's key) and whose
   other entries are ES256 Signed Statements of the trusted issuer (kid), each served as a
   transparent statement with a receipt, like ``GET /entries/<id>/statement`` of the real log
   (fixture server in another process). Every statement is fetched (one request each), parsed,
   hashed to its leaf and judged by the policy in force (signature verified); and, for
   comparison, the same without the policy (``--no-policy``: parse and hash only).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_monitor_fixture import FixtureLog, FixtureServer, make_entries  # noqa: E402
from verifier.monitor import Auditor, HttpLog, Monitor, Reporter  # noqa: E402
from verifier.note import Checkpoint  # noqa: E402


def _serve(log: FixtureLog, conn) -> None:
    with FixtureServer(log) as srv:
        conn.send(srv.url)
        conn.recv()  # until told to stop


def statement_log(m: int, origin: str = "bench.example/stmts"):
    """A FixtureLog of m entries: the policy statement, then m-1 issuer statements (see 3.)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tlog.keys import LogKeys, ReceiptKey, TrustStore
    from tlog.policy import Policy
    from verifier import cose
    from verifier.keys import cose_key_from_public, encode_keyset, thumbprint
    from verifier.receipt import assemble_receipt, encode_inclusion_proof, receipt_protected
    from verifier.transparent import attach_receipts

    log = FixtureLog(origin)
    log_key = ec.generate_private_key(ec.SECP256R1())
    log_kid = thumbprint(log_key.public_key())
    issuer = ec.generate_private_key(ec.SECP256R1())
    kid = thumbprint(issuer.public_key())
    lk = LogKeys(ReceiptKey(log_key, log_kid), {}, log.signer, origin)
    policy = Policy(trust=TrustStore(issuer_keys={kid: issuer.public_key()}), allowed_algs=[-7, -8])
    prot = receipt_protected(alg=-7, kid=log_kid, issuer="https://bench.example", subject=origin,
                             iat=int(time.time()), vds=1)
    receipt = assemble_receipt(prot, bytes(64), inclusion=[encode_inclusion_proof(m, 0, [bytes(32)] * 17)])
    stmts = [policy.statement(lk, "https://bench.example", None)]
    for i in range(m - 1):
        stmts.append(cose.sign1(issuer, {1: -7, 3: "application/json", 4: kid,
                                         15: {1: "https://issuer.example", 2: f"workload/{i}"}},
                                b'{"build": %d, "digest": "%064x"}' % (i, i)))
    leaves = []
    for st in stmts:  # no unprotected header: the statement bytes are the message itself
        d = sha256(st).digest()
        leaves.append(d)
        log.extra[f"entries/{d.hex()}/statement"] = attach_receipts(st, [receipt])
    log.extra[".well-known/scitt-keys"] = encode_keyset([cose_key_from_public(log_key.public_key(), kid=log_kid,
                                                                              alg=-7)])
    log.append(leaves)
    return log, [log_key.public_key()]


def bench_statements(m: int, workers: int) -> None:
    from verifier.monitor import StatementChecker

    try:
        from verifier.policy import PolicyTracker, log_keys_from
    except ImportError:  # the code before the policy audit: statements parsed and hashed only
        PolicyTracker = None
    t = time.perf_counter()
    log, log_pubs = statement_log(m)
    print(f"statement fixture: {m:,} entries (1 policy + {m - 1:,} ES256 statements), built in "
          f"{time.perf_counter() - t:.1f} s")
    note = log.note
    cp = Checkpoint.parse(note.split("\n\n")[0] + "\n")
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_serve, args=(log, child), daemon=True)
    p.start()
    url = parent.recv()
    modes = ["no-policy"] + (["policy"] if PolicyTracker is not None else [])
    try:
        for mode in modes:
            h = HttpLog(url)
            a = Auditor(h.fetch, None, workers=workers)
            if mode == "policy":
                chk = StatementChecker(h, policy=PolicyTracker(log_keys_from(log_pubs), origin=cp.origin, grace=0))
            else:
                chk = StatementChecker(h)
            a.check_entries = chk
            t = time.perf_counter()
            st = a.audit(cp, note)
            dt = time.perf_counter() - t
            assert st.audited_size == m and chk.checked == m
            extra = ""
            if mode == "policy":
                assert chk.policies == 1 and chk.signature_verified == m
                extra = (f", {chk.signature_verified:,} signatures verified "
                         f"({getattr(chk, 'presigned', 0):,} in the fetch threads)")
            print(f"full audit with statements, {mode} ({workers} fetch threads, {m + 2 * ((m + 255) // 256):,} "
                  f"requests): {dt:.2f} s, {m / dt:,.0f} entries/s{extra}")
    finally:
        parent.send("stop")
        p.join(10)
        if p.is_alive():
            p.terminate()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--statements", type=int, default=100_000,
                    help="entries of the statement audit (3.); 0 to skip")
    ap.add_argument("--only-statements", action="store_true", help="run 3. only")
    args = ap.parse_args()
    n = args.entries
    print(f"cpu: {os.cpu_count()} logical, python {sys.version.split()[0]}")
    if args.statements:
        bench_statements(args.statements, args.workers)
    if args.only_statements:
        return 0

    t = time.perf_counter()
    log = FixtureLog("bench.example/log")
    log.append(make_entries(n))
    note = log.note
    cp = Checkpoint.parse(note.split("\n\n")[0] + "\n")
    print(f"fixture: {n:,} entries, tiles computed in {time.perf_counter() - t:.1f} s")

    # 1a. audit over HTTP, server in another process
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_serve, args=(log, child), daemon=True)
    p.start()
    url = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            st = Auditor(HttpLog(url).fetch, Path(d) / "audit.json", workers=args.workers).audit(cp, note)
            dt = time.perf_counter() - t
        assert st.audited_size == n
        tiles = (n + 255) // 256
        print(f"full audit over HTTP ({args.workers} fetch threads, ~{2 * tiles:,} requests): "
              f"{dt:.2f} s, {n / dt:,.0f} entries/s")
    finally:
        parent.send("stop")
        p.join(10)
        if p.is_alive():
            p.terminate()

    # 1b. audit compute bound: tiles read in-process
    t = time.perf_counter()
    Auditor(log.get, None, workers=1).audit(cp, note)
    dt = time.perf_counter() - t
    print(f"full audit in-process (no HTTP): {dt:.2f} s, {n / dt:,.0f} entries/s")

    # 2. monitor cost per new checkpoint
    with FixtureServer(log) as srv, tempfile.TemporaryDirectory() as d:
        import io

        import json

        events = io.StringIO()
        mon = Monitor(HttpLog(srv.url), log.signer.verifier(), Path(d) / "state.json",
                      reporter=Reporter(events, io.StringIO()))
        mon.poll()  # the first checkpoint (trusted on first use)
        for k in (1, 100, 1000):
            times, reqs = [], []
            events.seek(0)
            events.truncate()
            for r in range(args.rounds):
                log.append(make_entries(k, salt=b"%d-%d" % (k, r)))
                r0 = log.requests
                t = time.perf_counter()
                assert mon.poll() is True
                times.append(time.perf_counter() - t)
                reqs.append(log.requests - r0)
            print(f"monitor, +{k} entries per checkpoint at ~{log.tiles.size:,}: "
                  f"median {statistics.median(times) * 1000:.2f} ms, p90 "
                  f"{sorted(times)[int(0.9 * len(times))] * 1000:.2f} ms, "
                  f"{statistics.mean(reqs):.1f} HTTP requests (checkpoint + tiles), incl. state fsync")
            checks = [json.loads(ln)["check_seconds"] for ln in events.getvalue().splitlines()
                      if '"checkpoint"' in ln]
            print(f"    of which signature + tile fetch + consistency proof: median "
                  f"{statistics.median(checks) * 1000:.2f} ms (the rest: GET checkpoint, state write+fsync)")
        r0 = log.requests
        t = time.perf_counter()
        for _ in range(args.rounds):
            mon.poll()
        print(f"monitor, unchanged checkpoint: {(time.perf_counter() - t) / args.rounds * 1000:.2f} ms per poll")
    return 0


if __name__ == "__main__":
    sys.exit(main())
