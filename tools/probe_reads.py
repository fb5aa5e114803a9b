"""Random-read latency of a file, as a cold proof sees the disk (issue 17).

    python3 tools/probe_reads.py DATA_DIR/log.sqlite-tiles [--reads 2000] [--drop-caches]

Reads random 16 KiB records (the tile file's record size) with ``pread``: one at a time, two in
a row, two announced together with ``POSIX_FADV_WILLNEED`` (what ``L0File.read`` does for a
proof that needs two tiles), and two from two threads. ``--drop-caches`` (root) drops the OS page
cache first, so the reads go to the device. Prints p50/p90/p99/max in ms per kind and the load.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time

REC = 16384


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--drop-caches", action="store_true")
    args = ap.parse_args(argv)
    try:
        fd = os.open(args.path, os.O_RDONLY)
    except OSError as e:
        print(f"probe_reads: {e}", file=sys.stderr)
        return 2
    nrec = os.fstat(fd).st_size // REC
    if nrec < 2:
        print(f"probe_reads: {args.path} holds fewer than two 16 KiB records", file=sys.stderr)
        return 2
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    if args.drop_caches:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    rnd = random.Random(int.from_bytes(os.urandom(4), "big"))

    def one():
        os.pread(fd, REC, rnd.randrange(nrec) * REC)

    def two_seq():
        one()
        one()

    def two_advised():
        a, b = rnd.randrange(nrec) * REC, rnd.randrange(nrec) * REC
        os.posix_fadvise(fd, a, REC, os.POSIX_FADV_WILLNEED)
        os.posix_fadvise(fd, b, REC, os.POSIX_FADV_WILLNEED)
        os.pread(fd, REC, a)
        os.pread(fd, REC, b)

    def two_threads():
        b = rnd.randrange(nrec) * REC
        th = threading.Thread(target=os.pread, args=(fd, REC, b))
        th.start()
        one()
        th.join()

    for name, fn, k in (("one", one, args.reads), ("two in a row", two_seq, args.reads // 2),
                        ("two advised", two_advised, args.reads // 2), ("two threads", two_threads, args.reads // 2)):
        xs = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t)
        print(f"{name:13s} p50 {statistics.median(xs) * 1e3:.3f}  p90 {pct(xs, 90) * 1e3:.3f}  "
              f"p99 {pct(xs, 99) * 1e3:.3f}  max {max(xs) * 1e3:.2f} ms  ({k})")
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
