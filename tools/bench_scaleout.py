#!/usr/bin/env python3
"""Scale-out on PostgreSQL: N log instances vs 1 on the same machine, takeover and recovery.

    python tools/bench_scaleout.py                      # 1 vs 3 instances, 24 clients, 15 s each
    python tools/bench_scaleout.py --faults             # + takeover (kill -9, SIGSTOP) and PG restart

Each run starts a throwaway PostgreSQL of its own (initdb in a temporary directory; nothing
else uses it) unless ``--pg-url`` names one, and a fresh database per configuration; the
instances are gunicorn ``tlog.server.wsgi:app`` (``--workers`` x ``--threads`` each, the
integrator on PostgreSQL: one lease holder for the log, every worker a frontend, see
docs/ARCHITECTURE.md), started as tests/pg_cluster.py does. The same total number of
keep-alive clients (``--clients``) is spread over the instances; statements are signed before
the clock starts. Measured: registrations/s (201 + 303 answers) over ``--duration`` seconds
after a warm-up, p50/p99 latency, status counts, for 1 instance and for ``--instances``.

``--faults`` (on the N-instance cluster, under light load): time from kill -9 of the lease
holder to the next fencing token in the lease row, the same after SIGSTOP of the holder, and
(own PostgreSQL only) time from a PostgreSQL restart (``pg_ctl restart -m fast``) to the first
201. Prints one JSON line per measurement, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.pg_cluster import Client, Cluster, LeaseWatch  # noqa: E402
from tests.test_server_support import statement, write_public  # noqa: E402


def _db(base_url: str) -> str:
    import psycopg

    name = f"bench_so_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


def _drop(base_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def run_load(cluster: Cluster, key, clients: int, duration: float, warmup: float, per_client: int) -> dict:
    insts = cluster.instances
    bodies = [[statement(key, sub=f"b/{uuid.uuid4().hex[:6]}/{c}/{i}") for i in range(per_client)]
              for c in range(clients)]
    cls = [Client(insts[c % len(insts)], bodies[c]) for c in range(clients)]
    for c in cls:
        c.start()
    time.sleep(warmup)
    t0 = time.monotonic()
    time.sleep(duration)
    t1 = time.monotonic()
    for c in cls:
        c.stop.set()
    for c in cls:
        c.join(30)
    window = [r for c in cls for r in c.results if t0 <= r[3] + r[4] <= t1]
    ok = [r for r in window if r[1] in (201, 303)]
    statuses: dict[int, int] = {}
    for r in window:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    lat = sorted(r[4] for r in ok)
    exhausted = sum(1 for c in cls if len(c.results) >= per_client)
    return {"registrations_per_s": round(len(ok) / (t1 - t0), 1), "statuses": statuses,
            "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
            "clients_out_of_statements": exhausted}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", help="an existing PostgreSQL (default: a throwaway server of our own)")
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--clients", type=int, default=24, help="total clients, spread over the instances")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=1, help="1-instance / N-instance runs, alternated")
    ap.add_argument("--per-client", type=int, default=2500, help="pre-signed statements per client")
    ap.add_argument("--faults", action="store_true", help="also measure takeover and PostgreSQL restart")
    ap.add_argument("--lease-ttl", type=float, default=3.0)
    args = ap.parse_args()

    pg = None
    base = args.pg_url
    if base is None:
        from tests.pg_throwaway import ThrowawayPostgres

        pg = ThrowawayPostgres()
        base = pg.url
    key = ec.generate_private_key(ec.SECP256R1())
    tmp = Path(tempfile.mkdtemp(prefix="tlog-bench-so-"))
    pem = write_public(tmp / "iss.pem", key)
    settings = {"lease_ttl": args.lease_ttl}
    try:
        for rnd in range(args.rounds):
            for n in (1, args.instances):
                url = _db(base)
                d = tmp / f"r{rnd}n{n}"
                d.mkdir()
                cluster = Cluster(d, url, pem, n=n, workers=args.workers, threads=args.threads, settings=settings)
                try:
                    res = run_load(cluster, key, args.clients, args.duration, args.warmup, args.per_client)
                    out = {"bench": "scaleout", "instances": n, "workers": args.workers, "threads": args.threads,
                           "clients": args.clients, "duration_s": args.duration, **res,
                           "loadavg": [round(x, 2) for x in os.getloadavg()], "round": rnd}
                    print(json.dumps(out), flush=True)
                    if args.faults and n == args.instances and rnd == args.rounds - 1:
                        faults(cluster, url, key, pg, args)
                finally:
                    cluster.stop()
                    _drop(base, url)
    finally:
        if pg is not None:
            pg.close()
    return 0


def faults(cluster: Cluster, url: str, key, pg, args) -> None:
    watch = LeaseWatch(url)
    watch.start()
    bodies = [[statement(key, sub=f"f/{c}/{i}") for i in range(3000)] for c in range(3)]
    cls = [Client(cluster.instances[c % len(cluster.instances)], bodies[c]) for c in range(3)]
    for c in cls:
        c.start()
    try:
        time.sleep(2.0)
        for what, sig in (("kill -9", signal.SIGKILL), ("SIGSTOP", signal.SIGSTOP)):
            _, _, token = watch.changes[-1]
            pid = watch.holder_pid()
            t0 = time.monotonic()
            os.kill(pid, sig)
            took = watch.takeover_after(t0, token, limit=60)
            print(json.dumps({"bench": "takeover", "after": what, "lease_ttl": args.lease_ttl,
                              "seconds": round(took, 2), "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)
            if sig == signal.SIGSTOP:
                os.kill(pid, signal.SIGCONT)
            time.sleep(2.0)
        if pg is not None:
            pg.restart()
            t0 = time.monotonic()
            deadline = t0 + 60
            first = None
            while first is None and time.monotonic() < deadline:
                done = [r[3] + r[4] for c in cls for r in list(c.results) if r[1] == 201 and r[3] >= t0]
                first = min(done) if done else None
                time.sleep(0.02)
            print(json.dumps({"bench": "postgres-restart", "first_201_after_s": round(first - t0, 2) if first else None,
                              "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    finally:
        for c in cls:
            c.stop.set()
        for c in cls:
            c.join(30)
        watch.stop.set()


if __name__ == "__main__":
    sys.exit(main())
