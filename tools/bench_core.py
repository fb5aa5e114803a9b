#!/usr/bin/env python3
"""Benchmark of the tlog core (tlog.log.Log) on SQLite or PostgreSQL.

    python tools/bench_core.py --backend sqlite --entries 1000000
    python tools/bench_core.py --backend postgres --entries 1000000 --pg-url postgresql://...
    python tools/bench_core.py --quick            # 20,000 entries, both backends if PG is set

Measures, with small synthetic statements (``--data-size`` bytes each):
  * durable in-process appends/s (Log.append, batches of ``--batch``; each batch is one
    transaction with fsync, checkpoint signed, consistency with the previous one verified);
    input generation (statement bytes and their SHA-256) is outside the timed region;
  * restart to ready: a fresh storage handle and Log.open (state, right edge and root
    recomputed from tiles and verified, last checkpoint signature verified);
  * inclusion and consistency proof latency (p50/p99/max), cold: first requests after the
    restart with an empty tile cache (the OS page cache is not dropped);
  * storage bytes per entry beyond the statement bytes themselves;
  * SQLite: bytes written to storage per appended entry (WAL and checkpoints, /proc/self/io).
Prints a JSON line with every figure (``--json`` to append it to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlog.log import Log  # noqa: E402
from tlog.storage import open_storage  # noqa: E402
from tlog.storage.sqlite import DEFAULT_MERGE_EVERY  # noqa: E402
from verifier import merkle  # noqa: E402
from verifier.note import Signer  # noqa: E402

ORIGIN = "bench.example/log"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _written() -> int | None:
    """Bytes this process caused to be written to storage so far (Linux /proc/self/io)."""
    try:
        with open("/proc/self/io") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("write_bytes:"))
    except (OSError, StopIteration):
        return None


def open_backend(args, schema):
    if args.backend == "sqlite":
        kw = {"merge_every": args.merge_every} if args.merge_every else {}
        return open_storage(args.path, **kw)
    from tlog.storage.postgres import PostgresStorage

    return PostgresStorage(args.pg_url, schema=schema)


def run(args) -> dict:
    signer = Signer.generate(ORIGIN)
    schema = "bench_" + uuid.uuid4().hex[:10]
    tmpdir = None
    if args.backend == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="tlog-bench-", dir=args.dir)
        args.path = os.path.join(tmpdir, "log.sqlite")
    res = {"backend": args.backend, "entries": args.entries, "batch": args.batch, "data_size": args.data_size,
           **({"merge_every": args.merge_every or DEFAULT_MERGE_EVERY} if args.backend == "sqlite" else {}),
           "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}
    st = open_backend(args, schema)
    try:
        log = Log.open(st, origin=ORIGIN, note_signer=signer)
        n = args.entries
        t_append = 0.0
        rnd = random.Random(1)
        pad = rnd.randbytes(max(0, args.data_size - 16))
        i = 0
        w0 = _written()
        t_wall = time.perf_counter()
        while i < n:
            k = min(args.batch, n - i)
            datas = [b"%016d" % j + pad for j in range(i, i + k)]
            items = [(sha256(d).digest(), d, ()) for d in datas]
            t0 = time.perf_counter()
            ents = log.append(items)
            t_append += time.perf_counter() - t0
            assert ents[-1].index == i + k - 1 and not ents[-1].duplicate
            i += k
            if args.progress and (i // args.batch) % 250 == 0:
                print(f"  {i:,} entries, {i / t_append:,.0f}/s", file=sys.stderr)
        res["append_per_s"] = round(n / t_append)
        res["append_wall_per_s_incl_input_gen"] = round(n / (time.perf_counter() - t_wall))
        if args.backend == "sqlite" and w0 is not None:  # PostgreSQL writes in its own processes
            res["written_bytes_per_entry"] = round((_written() - w0) / n)
        root = log.root(n)
        log.close()
        if args.backend == "sqlite":
            st.checkpoint_wal()
        st.close()

        # restart to ready
        t0 = time.perf_counter()
        st = open_backend(args, schema)
        log = Log.open(st, origin=ORIGIN, note_signer=signer)
        res["restart_to_ready_s"] = round(time.perf_counter() - t0, 4)
        assert log.size == n and log.root(n) == root

        # cold proofs
        rnd = random.Random(2)
        inc, con = [], []
        checks = []
        for _ in range(args.proofs):
            idx = rnd.randrange(n)
            size = n if rnd.random() < 0.5 else rnd.randint(idx + 1, n)
            t0 = time.perf_counter()
            p = log.inclusion_proof(idx, size)
            inc.append(time.perf_counter() - t0)
            if len(checks) < 20:
                checks.append(("i", idx, size, p))
            s1 = rnd.randint(1, n - 1) if n > 1 else 1
            s2 = n if rnd.random() < 0.5 else rnd.randint(s1, n)
            t0 = time.perf_counter()
            q = log.consistency_proof(s1, s2)
            con.append(time.perf_counter() - t0)
            if len(checks) < 40:
                checks.append(("c", s1, s2, q))
        for kind, a, b, p in checks:  # the measured proofs are real ones
            if kind == "i":
                leaf = merkle.leaf_hash(log.leaf_input(a))
                merkle.verify_inclusion(a, b, leaf, p, log.root(b))
            else:
                merkle.verify_consistency(a, b, p, log.root(a), log.root(b))
        for name, xs in (("inclusion", inc), ("consistency", con)):
            res[f"{name}_p50_ms"] = round(statistics.median(xs) * 1e3, 3)
            res[f"{name}_p99_ms"] = round(pct(xs, 99) * 1e3, 3)
            res[f"{name}_max_ms"] = round(max(xs) * 1e3, 3)
        used = st.bytes_used()
        res["storage_bytes"] = used
        res["bytes_per_entry_beyond_statement"] = round(used / n - args.data_size, 1)
        res["load_avg_end"] = os.getloadavg()[0]
        log.close()
    finally:
        st.close()
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if args.backend == "postgres" and not args.keep:
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return res


COLUMNS = [
    ("backend", "backend"), ("entries", "entries"), ("batch", "batch"),
    ("append_per_s", "appends/s"), ("restart_to_ready_s", "restart (s)"),
    ("inclusion_p50_ms", "incl p50 ms"), ("inclusion_p99_ms", "incl p99 ms"),
    ("consistency_p50_ms", "cons p50 ms"), ("consistency_p99_ms", "cons p99 ms"),
    ("bytes_per_entry_beyond_statement", "B/entry"), ("load_avg_start", "load"),
]


def markdown_table(rows: list[dict]) -> str:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for k, _ in COLUMNS:
            v = r.get(k, "")
            cells.append(f"{v:,}" if isinstance(v, int) else (f"{v:.2f}" if k == "load_avg_start" else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--data-size", type=int, default=64, help="synthetic statement size in bytes")
    ap.add_argument("--proofs", type=int, default=2000, help="proofs of each kind measured after restart")
    ap.add_argument("--merge-every", type=int, default=None,
                    help="SQLite: merge the recent dedup keys into the main tier every N entries "
                         "(default: tlog.storage.sqlite.DEFAULT_MERGE_EVERY)")
    ap.add_argument("--dir", default=None, help="directory for the SQLite file (default: system temp)")
    ap.add_argument("--pg-url", default=os.environ.get("TLOG_TEST_PG_URL"))
    ap.add_argument("--quick", action="store_true", help="20,000 entries on SQLite (and PostgreSQL if --pg-url/TLOG_TEST_PG_URL)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", help="append the result line to this file")
    ap.add_argument("--table", metavar="JSONL", help="print a markdown table of the results in JSONL and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table([json.loads(l) for l in open(args.table) if l.strip()]))
        return 0
    if args.entries < 1 or args.batch < 1:
        ap.error("--entries and --batch must be >= 1")
    runs = [args.backend]
    if args.quick:
        args.entries = 20_000
        args.proofs = 500
        runs = ["sqlite"] + (["postgres"] if args.pg_url else [])
    for b in runs:
        args.backend = b
        if b == "postgres" and not args.pg_url:
            ap.error("--pg-url (or TLOG_TEST_PG_URL) is needed for --backend postgres")
        res = run(args)
        line = json.dumps(res)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
