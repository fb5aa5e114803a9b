"""Memory with large concurrent registrations (issue 11): one command.

    python tools/bigbodies.py                    # tlog serve --workers 1, 64 concurrent ~1 MiB statements
    python tools/bigbodies.py --concurrent 32 --server gunicorn

Starts the log on 127.0.0.1 (``tlog serve --workers 1 --threads 16``, or ``--server gunicorn``:
gunicorn gthread 1 worker x 16 threads, the setup before), signs ``--concurrent`` statements whose
size is the log's limit (``max_statement_size``, 1 MiB), sends them all at once (``--rounds``
times, one connection each), and reports the peak resident memory (``VmHWM`` of /proc) of the
worker process and of its integrator process, and the statuses. Pass: both under ``--limit-mib``
(300) and every statement registered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.loadgen import free_port  # noqa: E402
from tools.slowclients import start_log, stop, wait_ready  # noqa: E402


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(d))
    return out


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def worker_and_integrator(master: int) -> tuple[int, int]:
    """The server's (only) worker process and that worker's integrator process."""
    for w in children(master):
        for i in children(w):
            if "integrator_main" in cmdline(i):
                return w, i
    raise RuntimeError("no worker with an integrator found")


def big_statement(key, i: int, size: int) -> bytes:
    from verifier import cose
    from verifier import keys as vkeys

    kid = vkeys.thumbprint(key.public_key())
    prot = {1: -7, 3: "application/octet-stream", 4: kid, 15: {1: "https://big.example", 2: f"big/{os.getpid()}/{i}"}}
    overhead = len(cose.sign1(key, prot, b""))
    return cose.sign1(key, prot, os.urandom(size - overhead - 8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    ap.add_argument("--concurrent", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=1 << 20, help="statement size (the log's max_statement_size)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--limit-mib", type=float, default=300.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (1 <= args.concurrent <= 256 and 1 <= args.rounds <= 10):
        ap.error("bounded runs only")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    work = Path(tempfile.mkdtemp(prefix="tlog-big-"))
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "issuer.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {"TLOG_DATA_DIR": str(work / "data"), "TLOG_ISSUER_KEYS": json.dumps([{"path": str(work / "issuer.pem"), "iss": ["https://big.example"]}]),
           "TLOG_ORIGIN": "big.example/log", "TLOG_RATE_LIMIT": "0", "TLOG_REGISTER_WAIT": "30"}
    report: dict = {"conditions": {"server": args.server, "concurrent": args.concurrent, "rounds": args.rounds,
                                   "size": args.size, "threads": args.threads, "loadavg_start": os.getloadavg()}}
    port = free_port()
    proc = start_log(args.server, work, port, workers=1, threads=args.threads, env=env)
    statuses: dict = {}
    try:
        wait_ready(proc, port, "/health")
        w, integ = worker_and_integrator(proc.pid)
        report["rss_idle_mib"] = {"worker": round(status_kib(w, "VmRSS") / 1024, 1),
                                  "integrator": round(status_kib(integ, "VmRSS") / 1024, 1)}
        lock = threading.Lock()
        t0 = time.monotonic()
        for rnd in range(args.rounds):
            sts = [big_statement(key, rnd * 1000 + i, args.size) for i in range(args.concurrent)]
            barrier = threading.Barrier(args.concurrent)

            def send(st):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                try:
                    barrier.wait(30)
                    c.request("POST", "/entries", body=st, headers={"Content-Type": "application/cose"})
                    r = c.getresponse()
                    r.read()
                    s = r.status
                except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as e:
                    s = type(e).__name__
                finally:
                    c.close()
                with lock:
                    statuses[s] = statuses.get(s, 0) + 1

            ts = [threading.Thread(target=send, args=(st,)) for st in sts]
            for t in ts:
                t.start()
            for t in ts:
                t.join(180)
            del sts
        report["elapsed_s"] = round(time.monotonic() - t0, 2)
        report["peak_rss_mib"] = {"worker": round(status_kib(w, "VmHWM") / 1024, 1),
                                  "integrator": round(status_kib(integ, "VmHWM") / 1024, 1)}
    finally:
        stop(proc)
        report["conditions"]["loadavg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    report["status"] = {str(k): v for k, v in statuses.items()}
    peak = report["peak_rss_mib"]
    report["pass"] = (max(peak.values()) < args.limit_mib and statuses.get(201, 0) == args.concurrent * args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["conditions"]
        print(f"{args.server}: {c['rounds']} x {c['concurrent']} concurrent {c['size']}-byte statements, "
              f"load {c['loadavg_start'][0]:.1f} -> {c['loadavg_end'][0]:.1f}, {report['elapsed_s']} s")
        print(f"  idle RSS   worker {report['rss_idle_mib']['worker']} MiB, integrator {report['rss_idle_mib']['integrator']} MiB")
        print(f"  peak RSS   worker {peak['worker']} MiB, integrator {peak['integrator']} MiB (limit {args.limit_mib:g})")
        print(f"  statuses   {report['status']}")
        print("PASS" if report["pass"] else "FAIL")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
