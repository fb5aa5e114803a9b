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
  * bytes written to storage per appended entry (SQLite: WAL, checkpoints and dedup runs, from
    /proc/self/io; PostgreSQL with ``--pg-private``: every server process's /proc/PID/io, and
    again with a CHECKPOINT after the appends: ``written_bytes_per_entry_incl_checkpoint``);
  * per slice of the run (``--slices``, default 10 %): appends/s, CPU microseconds per entry
    spent in Log.append (the rate a core of its own would give, fsync waits aside), bytes
    written per entry, load;
  * dedup hits/s: 2,000 statements already in the log, at random indexes, appended again.
``--resume DIR`` keeps the log in DIR and continues a prepared one (statements are a function
of their index), so a 10^8 log is built once and measured again (``--entries`` = its size: only
the restart, proofs and dedup; ``--proofs-only``: only the restart and the proofs, nothing written).
``--drop-caches`` drops the OS page cache before the restart. The proofs' indexes and sizes are
drawn from ``--proof-seed`` (default: a fresh seed per run, printed as ``proof_seed``), so a run
without ``--drop-caches`` does not just re-read the pages the previous run left in the cache.
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
    """Bytes this process caused to be written to storage so far (Linux /proc/self/io), plus
    its reaped children's (the background merges: getrusage's output blocks, 512 bytes each,
    the same accounting)."""
    import resource

    try:
        with open("/proc/self/io") as f:
            own = next(int(l.split()[1]) for l in f if l.startswith("write_bytes:"))
    except (OSError, StopIteration):
        return None
    return own + resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512


def open_backend(args, schema):
    if args.backend == "sqlite":
        kw = {"merge_every": args.merge_every} if args.merge_every else {}
        return open_storage(args.path, **kw)
    from tlog.storage.postgres import PostgresStorage

    return PostgresStorage(args.pg_url, schema=schema)


class PGWrites:
    """Bytes the PostgreSQL server's processes wrote (sum of their /proc/PID/io write_bytes;
    readable as root or as the server's user): data files, WAL, everything. Only meaningful on
    a server nothing else uses (``--pg-private``). Processes that exit between two readings
    drop out of the sum; the ones that matter (checkpointer, background and WAL writers, our
    backend) live through the run."""

    def __init__(self, url: str) -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            self.dir = c.execute("SHOW data_directory").fetchone()[0]

    def pids(self) -> list[int]:
        with open(os.path.join(self.dir, "postmaster.pid")) as f:
            pm = int(f.readline())
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                            kids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return [pm] + kids

    def read(self) -> dict[int, int]:
        out = {}
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/io") as f:
                    out[pid] = next(int(l.split()[1]) for l in f if l.startswith("write_bytes:"))
            except (OSError, StopIteration):
                pass
        return out

    @staticmethod
    def delta(a: dict[int, int], b: dict[int, int]) -> int:
        return sum(b[p] - a[p] for p in a if p in b)


# the README's settings for a log's server ("PostgreSQL server settings"): --pg-settings readme
README_PG_SETTINGS = ("shared_buffers=6GB max_wal_size=16GB min_wal_size=2GB checkpoint_timeout=15min "
                      "wal_compression=lz4")


class PrivatePostgres:
    """A PostgreSQL server of our own for the benchmark (tests/pg_throwaway.py's, fsync=on,
    by default PostgreSQL's shared_buffers of 128 MB), so that its write counters are ours alone.
    ``settings``: "name=value ..." given to the server after those (later ones win)."""

    def __init__(self, settings: str = "") -> None:
        from tests.pg_throwaway import ThrowawayPostgres

        extra = " ".join(f"-c {kv}" for kv in settings.split())

        class _PG(ThrowawayPostgres):
            def start(self):
                self._run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                          f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=on "
                          f"-c synchronous_commit=on -c shared_buffers=128MB {extra}", "start")

        self.pg = _PG()
        self.url = self.pg.url

    def close(self) -> None:
        self.pg.close()


def drop_page_cache() -> bool:
    """Write back and drop the OS page cache (needs root); False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _load_or_make_signer(dirpath: str | None) -> Signer:
    if dirpath is None:
        return Signer.generate(ORIGIN)
    p = os.path.join(dirpath, "signer.skey")
    if os.path.exists(p):
        return Signer.from_skey(open(p).read())
    s = Signer.generate(ORIGIN)
    with open(p, "w") as f:
        f.write(s.skey)
    return s


def statements(i: int, k: int, pad: bytes) -> list[bytes]:
    """Statements i .. i+k-1 (a function of the index: a resumed log continues the same way)."""
    return [b"%016d" % j + pad for j in range(i, i + k)]


def run(args) -> dict:
    tmpdir = None
    keep = args.keep
    if args.resume:
        os.makedirs(args.resume, exist_ok=True)
        workdir = args.resume
        keep = True
    elif args.backend == "sqlite":
        workdir = tmpdir = tempfile.mkdtemp(prefix="tlog-bench-", dir=args.dir)
    else:
        workdir = None
    signer = _load_or_make_signer(workdir)
    schema = "bench_" + uuid.uuid4().hex[:10]
    if args.backend == "sqlite":
        args.path = os.path.join(workdir, "log.sqlite")
    elif workdir is not None:
        sp = os.path.join(workdir, "pg-schema")
        if os.path.exists(sp):
            schema = open(sp).read().strip()
        else:
            with open(sp, "w") as f:
                f.write(schema)
    res = {"backend": args.backend, "entries": args.entries, "batch": args.batch, "data_size": args.data_size,
           **({"merge_every": args.merge_every or DEFAULT_MERGE_EVERY} if args.backend == "sqlite" else {}),
           "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
           "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if args.backend == "postgres" and args.pg_private:
        res["pg_settings"] = "shared_buffers=128MB " + args.pg_settings
    pgw = PGWrites(args.pg_url) if args.backend == "postgres" and args.pg_private else None
    written = (lambda: pgw.read()) if pgw else _written
    wdelta = PGWrites.delta if pgw else (lambda a, b: b - a)
    st = open_backend(args, schema)
    try:
        log = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=not args.proofs_only)
        if args.proofs_only:
            if not args.resume:
                raise SystemExit("--proofs-only needs --resume DIR (a prepared log)")
            args.entries = res["entries"] = log.size
        n = args.entries
        i = first = log.size
        res["resumed_from"] = first
        if first > n:
            raise SystemExit(f"the log at {workdir} has {first:,} entries, more than --entries {n:,}")
        rnd = random.Random(1)
        pad = rnd.randbytes(max(0, args.data_size - 16))
        bounds = sorted({n * j // args.slices for j in range(1, args.slices + 1)} | {n})
        slices = []
        blog = open(args.batch_log, "a") if args.batch_log else None
        t_append = 0.0
        w_all = written()
        t_wall = time.perf_counter()
        for hi in bounds:
            if hi <= i:
                continue
            lo, t_slice, c_slice, w0 = i, 0.0, 0.0, written()
            ch0 = os.times()
            while i < hi:
                k = min(args.batch, hi - i)
                items = [(sha256(d).digest(), d, ()) for d in statements(i, k, pad)]
                t0, c0 = time.perf_counter(), time.process_time()
                ents = log.append(items)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                t_slice += dt
                c_slice += dc
                if blog:  # one line per batch: which batches stall, and what they did
                    blog.write(json.dumps({"i": i, "ms": round(dt * 1e3, 2), "cpu_ms": round(dc * 1e3, 2),
                                           "new_run": args.backend == "sqlite" and (i + k) // (args.merge_every or DEFAULT_MERGE_EVERY) > i // (args.merge_every or DEFAULT_MERGE_EVERY),
                                           "merges_running": len(getattr(st, "_jobs", ())),
                                           "load": round(os.getloadavg()[0], 2)}) + "\n")
                assert ents[-1].index == i + k - 1 and not ents[-1].duplicate
                i += k
            t_append += t_slice
            # CPU time inside Log.append (this process: SQLite runs in it) per entry: what a core
            # of its own would take, fsync waits aside (on a shared machine the wall rate
            # follows the load)
            sl = {"from": lo, "to": hi, "append_per_s": round((hi - lo) / t_slice),
                  "cpu_us_per_entry": round(c_slice / (hi - lo) * 1e6, 2), "load_avg": round(os.getloadavg()[0], 2)}
            ch1 = os.times()  # background merges (child processes, counted once reaped)
            sl["merge_child_cpu_us_per_entry"] = round((ch1.children_user + ch1.children_system - ch0.children_user
                                                        - ch0.children_system) / (hi - lo) * 1e6, 2)
            w1 = written()
            if w0 is not None and w1 is not None:
                sl["written_bytes_per_entry"] = round(wdelta(w0, w1) / (hi - lo))
            slices.append(sl)
            if args.progress:
                print(json.dumps(sl), file=sys.stderr, flush=True)
        res["slices"] = slices
        if blog:
            blog.close()
        if i > first:
            res["append_per_s"] = round((i - first) / t_append)
            res["append_wall_per_s_incl_input_gen"] = round((i - first) / (time.perf_counter() - t_wall))
            w1 = written()
            if w_all is not None and w1 is not None:
                res["written_bytes_per_entry"] = round(wdelta(w_all, w1) / (i - first))
                if pgw is not None:
                    # the data pages the run dirtied and the server has not written back yet
                    # (a long checkpoint distance defers them): a CHECKPOINT writes them, counted
                    import psycopg

                    with psycopg.connect(args.pg_url, autocommit=True) as c:
                        c.execute("CHECKPOINT")
                    res["written_bytes_per_entry_incl_checkpoint"] = round(wdelta(w_all, written()) / (i - first))
        root = log.root(n)
        log.close()
        if args.backend == "sqlite":
            st.checkpoint_wal()
        st.close()

        res["page_cache"] = "dropped" if args.drop_caches and drop_page_cache() else "warm"
        # restart to ready
        t0 = time.perf_counter()
        st = open_backend(args, schema)
        log = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=not args.proofs_only)
        res["restart_to_ready_s"] = round(time.perf_counter() - t0, 4)
        assert log.size == n and log.root(n) == root

        # cold proofs
        seed = args.proof_seed if args.proof_seed is not None else int.from_bytes(os.urandom(4), "big")
        res["proof_seed"] = seed
        rnd = random.Random(seed)
        inc, con, cinc, ccon = [], [], [], []
        checks = []
        for _ in range(args.proofs):
            idx = rnd.randrange(n)
            size = n if rnd.random() < 0.5 else rnd.randint(idx + 1, n)
            t0, c0 = time.perf_counter(), time.process_time()
            p = log.inclusion_proof(idx, size)
            inc.append(time.perf_counter() - t0)
            cinc.append(time.process_time() - c0)
            if len(checks) < 20:
                checks.append(("i", idx, size, p))
            s1 = rnd.randint(1, n - 1) if n > 1 else 1
            s2 = n if rnd.random() < 0.5 else rnd.randint(s1, n)
            t0, c0 = time.perf_counter(), time.process_time()
            q = log.consistency_proof(s1, s2)
            con.append(time.perf_counter() - t0)
            ccon.append(time.process_time() - c0)
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
        # the same proofs' CPU time (this process): what they cost without waiting for a core
        # (or for the disk, when the page cache was dropped)
        for name, xs in (("inclusion", cinc), ("consistency", ccon)):
            res[f"{name}_cpu_p50_ms"] = round(statistics.median(xs) * 1e3, 3)
            res[f"{name}_cpu_p99_ms"] = round(pct(xs, 99) * 1e3, 3)
        res["proof_io_wait_ms"] = round((sum(inc) + sum(con) - sum(cinc) - sum(ccon)) * 1e3 / max(1, len(inc) + len(con)), 3)
        res["load_avg_after_proofs"] = round(os.getloadavg()[0], 2)
        # dedup of entries already in the log, spread over all of it (every tier)
        ks = [] if args.proofs_only else [rnd.randrange(n) for _ in range(min(n, 2000))]
        dups = [(sha256(statements(j, 1, pad)[0]).digest(), statements(j, 1, pad)[0], ()) for j in ks]
        if dups:
            t0 = time.perf_counter()
            ents = log.append(dups)
            res["dedup_hits_per_s"] = round(len(dups) / (time.perf_counter() - t0))
            assert [e.index for e in ents] == ks and all(e.duplicate for e in ents) and log.size == n
        used = st.bytes_used()
        res["storage_bytes"] = used
        res["bytes_per_entry_beyond_statement"] = round(used / n - args.data_size, 1)
        res["load_avg_end"] = os.getloadavg()[0]
        log.close()
    finally:
        st.close()
        if tmpdir and not keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
        if args.backend == "postgres" and not keep:
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


def slice_table(lines: list[dict], size: int) -> str:
    """Per-slice markdown from --progress lines (or result lines' "slices"), merged into slices
    of ``size`` entries (a slice's rate: its entries / its append time)."""
    sl = []
    for d in lines:
        sl += d.get("slices", []) if "slices" in d else ([d] if "from" in d else [])
    groups: dict[int, list[dict]] = {}
    for x in sl:
        groups.setdefault((x["to"] - 1) // size, []).append(x)
    out = ["| entries | appends/s | CPU us/entry | bytes written/entry | load |", "|---|---|---|---|---|"]
    for _, g in sorted(groups.items()):
        n = sum(x["to"] - x["from"] for x in g)
        t = sum((x["to"] - x["from"]) / x["append_per_s"] for x in g)
        cpu = [x["cpu_us_per_entry"] * (x["to"] - x["from"]) for x in g if "cpu_us_per_entry" in x]
        w = [x["written_bytes_per_entry"] * (x["to"] - x["from"]) for x in g if "written_bytes_per_entry" in x]
        loads = [x["load_avg"] for x in g]
        out.append(f"| {g[0]['from']:,}-{g[-1]['to']:,} | {round(n / t):,} | "
                   f"{round(sum(cpu) / n, 2) if len(cpu) == len(g) else '-'} | "
                   f"{round(sum(w) / n) if len(w) == len(g) else '-'} | {min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--data-size", type=int, default=64, help="synthetic statement size in bytes")
    ap.add_argument("--proofs", type=int, default=2000, help="proofs of each kind measured after restart")
    ap.add_argument("--proof-seed", type=int, default=None,
                    help="seed of the proofs' random indexes and sizes (default: fresh per run; "
                         "the same seed re-reads what the last run cached)")
    ap.add_argument("--merge-every", type=int, default=None,
                    help="SQLite: merge the recent dedup keys into the main tier every N entries "
                         "(default: tlog.storage.sqlite.DEFAULT_MERGE_EVERY)")
    ap.add_argument("--dir", default=None, help="directory for the SQLite file (default: system temp)")
    ap.add_argument("--pg-url", default=os.environ.get("TLOG_TEST_PG_URL"))
    ap.add_argument("--quick", action="store_true", help="20,000 entries on SQLite (and PostgreSQL if --pg-url/TLOG_TEST_PG_URL)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--resume", metavar="DIR",
                    help="keep the log in DIR (created if absent) and, if DIR already holds one, continue it "
                         "from its size up to --entries instead of rebuilding it (0 new entries: only the "
                         "restart, proofs and dedup are measured)")
    ap.add_argument("--slices", type=int, default=10, help="report appends per slice of --entries (default 10)")
    ap.add_argument("--proofs-only", action="store_true",
                    help="with --resume: append nothing and skip the dedup probe (it writes): only the restart and "
                         "the cold proofs of the log as it is (--entries is ignored)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the OS page cache before the restart (needs root; the result says which)")
    ap.add_argument("--pg-private", action="store_true",
                    help="PostgreSQL: run a server of our own (bytes written per entry are measured on it)")
    ap.add_argument("--pg-settings", default="", metavar="'NAME=VALUE ...'",
                    help="with --pg-private: server settings beyond fsync=on and shared_buffers=128MB; "
                         f"'readme': the README's settings for a log ({README_PG_SETTINGS})")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--batch-log", metavar="JSONL", help="append one line per appended batch (wall and CPU ms, "
                    "whether it wrote a level-0 dedup run, background merges running, load)")
    ap.add_argument("--json", help="append the result line to this file")
    ap.add_argument("--table", metavar="JSONL", help="print a markdown table of the results in JSONL and exit")
    ap.add_argument("--slice-table", metavar="FILE",
                    help="print per-slice markdown from the JSON lines in FILE (--progress output or results) and exit")
    ap.add_argument("--slice-size", type=int, default=10_000_000, help="entries per row of --slice-table")
    args = ap.parse_args(argv)
    if args.pg_settings == "readme":
        args.pg_settings = README_PG_SETTINGS
    if args.slice_table:
        rows = [json.loads(l) for l in open(args.slice_table) if l.strip().startswith("{")]
        print(slice_table(rows, args.slice_size))
        return 0
    if args.table:
        print(markdown_table([json.loads(l) for l in open(args.table) if l.strip()]))
        return 0
    if args.entries < 1 or args.batch < 1 or args.slices < 1:
        ap.error("--entries, --batch and --slices must be >= 1")
    runs = [args.backend]
    if args.quick:
        args.entries = 20_000
        args.proofs = 500
        runs = ["sqlite"] + (["postgres"] if args.pg_url else [])
    for b in runs:
        args.backend = b
        private = None
        if b == "postgres" and args.pg_private:
            if args.resume:
                ap.error("--pg-private cannot be resumed (the server goes with the run)")
            private = PrivatePostgres(args.pg_settings)
            args.pg_url = private.url
        if b == "postgres" and not args.pg_url:
            ap.error("--pg-url (or TLOG_TEST_PG_URL) is needed for --backend postgres")
        try:
            res = run(args)
        finally:
            if private is not None:
                private.close()
        line = json.dumps(res)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
