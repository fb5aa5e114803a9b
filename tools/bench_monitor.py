#!/usr/bin/env python3
"""Benchmark of the monitor (issue 6 figures), one command:

    python tools/bench_monitor.py [--entries 1000000] [--workers 8] [--rounds 50]

1. Full audit at N entries: every entry bundle and hash tile fetched over loopback HTTP from a
   fixture tile server running in a separate process (tiles computed in memory with
   verifier.tiles, not the log server), every leaf hash, tile and the root recomputed.
   Also the same audit with tiles read in-process (no HTTP): the hashing/compare bound.
2. Monitor cost per new checkpoint: the log at N entries grows by k entries, the monitor polls
   (GET checkpoint, signature, tiles for the consistency proof, proof verification, state fsync).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_monitor_fixture import FixtureLog, FixtureServer, make_entries  # noqa: E402
from verifier.monitor import Auditor, HttpLog, Monitor, Reporter  # noqa: E402
from verifier.note import Checkpoint  # noqa: E402


def _serve(log: FixtureLog, conn) -> None:
    with FixtureServer(log) as srv:
        conn.send(srv.url)
        conn.recv()  # until told to stop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    n = args.entries

    t = time.perf_counter()
    log = FixtureLog("bench.example/log")
    log.append(make_entries(n))
    note = log.note
    cp = Checkpoint.parse(note.split("\n\n")[0] + "\n")
    print(f"fixture: {n:,} entries, tiles computed in {time.perf_counter() - t:.1f} s")
    print(f"cpu: {os.cpu_count()} logical, python {sys.version.split()[0]}")

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
