"""Load benchmark for the log's HTTP front (one command).

    python tools/loadgen.py --rounds 3            # 16 keep-alive clients, 10 s per server per round
    python tools/loadgen.py --soak                # + 64 clients for 60 s: 5xx, lost and duplicate entries
    python tools/loadgen.py --url http://127.0.0.1:8000 --clients 16 --duration 10   # an already running log

Without ``--url`` it starts, on 127.0.0.1, three servers and drives each in every round with the
same client and the same number of clients (issue 13's last figure):

* **log**: the log (``tlog.server.wsgi``, fresh data dir, one trusted ES256 issuer key) under
  ``--server`` (granian, the production server of ``tlog serve``, by default) with
  ``--workers`` x ``--threads``;
* **bare**: the bare Flask POST endpoint (``tools.bare_flask``) under the same server, the same
  ``--workers``/``--threads`` (target: log/bare >= 0.8);
* **gthread**: the same bare Flask endpoint under gunicorn gthread ``--gthread-workers`` x
  ``--gthread-threads`` (default 2 x 16, the setup before granian; target: log/gthread >= 1.5;
  ``--gthread-workers 0`` leaves it out).

The order of the three is rotated from round to round. Statements are signed before the clock
starts (unique subjects), so the client's cost per request is the same for every server.

Client: threads with ``http.client`` keep-alive connections, loopback only. Every loop is bounded
by time and by the number of pre-signed statements.

Report: registrations/s (2xx/3xx answers per second), the server's CPU per answer (user + system
of the server's processes, /proc; the log's split into its integrator and the rest), the ratios log/bare and log/gthread per
round and their medians, p50/p99 latency, status counts, the load average before and after. ``--soak``: every 201 receipt is verified with the verifier library against the
log's keys, every 303 is followed to its receipt, and the tree size after the run must equal the
size before plus the number of distinct acknowledged statements (no entry lost, none twice).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from verifier import cose  # noqa: E402
from verifier import keys as vkeys  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_statements(key, n: int, tag: str) -> list[tuple[bytes, bytes]]:
    """n unique ES256 statements -> [(statement, leaf_input)]."""
    import hashlib

    kid = vkeys.thumbprint(key.public_key())
    out = []
    for i in range(n):
        prot = {1: -7, 3: "application/json", 4: kid, 15: {1: "https://loadgen.example", 2: f"{tag}/{i}"}}
        st = cose.sign1(key, prot, b'{"artifact":"sha256:%d"}' % i)
        # submitted with an empty unprotected map, so statement bytes = st
        out.append((st, hashlib.sha256(st).digest()))
    return out


# ---- servers --------------------------------------------------------------------------------


def server_command(server: str, app: str, port: int, workers: int, threads: int) -> list[str]:
    """``granian``: the production server as ``tlog serve`` runs it (RSGI, serving.httpd);
    ``gunicorn``: gthread, the setup before issue 11 (for comparisons)."""
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "rsgi", "--factory", "--workers", str(workers),
                "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--no-ws", "--log-level", "warning",
                "--http1-header-read-timeout", "10000", app.replace(":app", ":rsgi_app")]
    return [
        sys.executable, "-m", "gunicorn", "-k", "gthread", "--workers", str(workers), "--threads", str(threads),
        "-b", f"127.0.0.1:{port}", "--keep-alive", "30", "--timeout", "60", "--graceful-timeout", "5",
        "--log-level", "warning", app,
    ]


class Server:
    def __init__(self, app: str, port: int, workers: int, threads: int, env: dict, log_path: Path,
                 server: str = "granian") -> None:
        self.port = port
        self.log_file = open(log_path, "ab")
        cmd = server_command(server, app, port, workers, threads)
        mdir = Path(tempfile.mkdtemp(prefix="tlog-loadgen-metrics-"))  # as tlog serve does (tlog.metrics)
        env = {**env, "TLOG_THREADS": str(threads), "PROMETHEUS_MULTIPROC_DIR": str(mdir)}
        self.proc = subprocess.Popen(
            cmd, cwd=str(ROOT), env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)  # the process group of the gunicorn we started
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log_file.close()


def process_tree_cpu(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of ``root_pid`` and its descendants, by role: "integrator"
    (the log's integrator processes) and "server" (everything else: granian/gunicorn and their
    workers). Linux /proc; {} elsewhere. Less sensitive to other jobs on the machine than the
    rates: the CPU a registration costs, whoever else runs."""
    try:
        tck = os.sysconf("SC_CLK_TCK")
        kids: dict[int, list[int]] = {}
        info: dict[int, tuple[str, float]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                raw = open(f"/proc/{d}/stat").read()
                cmd = open(f"/proc/{d}/cmdline", "rb").read()
            except OSError:
                continue
            f = raw.rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append(int(d))
            info[int(d)] = ("integrator" if b"integrator_main" in cmd else "server", (int(f[11]) + int(f[12])) / tck)
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    todo = [root_pid]
    while todo:
        p = todo.pop()
        if p in info:
            role, t = info[p]
            out[role] = out.get(role, 0.0) + t
        todo.extend(kids.get(p, []))
    return out


def cpu_per_answer(before: dict, after: dict, answers: int) -> dict | None:
    """Microseconds of server CPU per answered request, by role and in total."""
    if not before or not answers:
        return None
    per = {k: round(1e6 * (after.get(k, 0.0) - before.get(k, 0.0)) / answers) for k in after}
    per["total"] = sum(per.values())
    return per


# ---- client ---------------------------------------------------------------------------------


class Result:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.status: dict[int, int] = {}
        self.errors = 0
        self.receipts: list[tuple[bytes, bytes]] = []  # (leaf_input, receipt)
        self.accepted: list[tuple[bytes, str]] = []  # (leaf_input, location) of 303s
        self.sent = 0


def client_loop(host, port, items, deadline, res: Result, keep: bool) -> None:
    conn = None
    headers = {"Content-Type": "application/cose", "Accept": "application/cose", "Connection": "keep-alive"}
    lat, stat = [], {}
    recs, acc = [], []
    errors = 0
    for st, leaf in items:
        if time.monotonic() >= deadline:
            break
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/entries", body=st, headers=headers)
            r = conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = None
            continue
        dt = time.perf_counter() - t0
        stat[r.status] = stat.get(r.status, 0) + 1
        if r.status in (201, 303):
            lat.append(dt)
            if keep:
                if r.status == 201:
                    recs.append((leaf, body))
                else:
                    acc.append((leaf, r.getheader("Location")))
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with res.lock:
        res.latencies += lat
        for k, v in stat.items():
            res.status[k] = res.status.get(k, 0) + v
        res.errors += errors
        res.receipts += recs
        res.accepted += acc


def drive(port: int, statements, clients: int, duration: float, keep: bool = False, host="127.0.0.1") -> dict:
    res = Result()
    slices = [statements[i::clients] for i in range(clients)]
    t0 = time.monotonic()
    deadline = t0 + duration
    ts = [threading.Thread(target=client_loop, args=(host, port, s, deadline, res, keep)) for s in slices]
    for t in ts:
        t.start()
    for t in ts:
        t.join(duration + 60)
    elapsed = time.monotonic() - t0
    lat = sorted(res.latencies)
    ok = len(lat)
    return {
        "clients": clients,
        "elapsed_s": round(elapsed, 2),
        "ok": ok,
        "per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(1000 * lat[len(lat) // 2], 2) if lat else None,
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
        "status": dict(sorted(res.status.items())),
        "conn_errors": res.errors,
        "exhausted": ok + sum(v for k, v in res.status.items() if k not in (201, 303)) >= len(statements),
        "_result": res,
    }


# ---- log reads for the soak check -------------------------------------------------------------


def http_get(port, path, host="127.0.0.1") -> tuple[int, bytes, dict]:
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def integration_stats(port: int, workers: int, host="127.0.0.1") -> dict:
    """Batches integrated, mean batch size and mean batch time, from /metrics (aggregated over
    the workers and their integrator processes: tlog.metrics)."""
    vals: dict[str, float] = {}
    for line in http_get(port, "/metrics", host)[1].decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if name in ("tlog_batch_size_count", "tlog_batch_size_sum", "tlog_batch_duration_seconds_sum"):
            vals[name] = float(value)
    batches = vals.get("tlog_batch_size_count", 0.0)
    return {"batches": int(batches),
            "mean_batch": round(vals.get("tlog_batch_size_sum", 0.0) / batches, 1) if batches else None,
            "mean_batch_ms": round(1000 * vals.get("tlog_batch_duration_seconds_sum", 0.0) / batches, 2) if batches else None}


def tree_size(port, host="127.0.0.1") -> int:
    return json.loads(http_get(port, "/health", host)[1])["tree_size"]


def verify_run(port: int, res: Result, size_before: int, host="127.0.0.1", wait_s: float = 60.0) -> dict:
    """Every acknowledged statement has a verifying receipt; sizes add up; no duplicates."""
    from verifier import receipt as vreceipt

    ks = vkeys.decode_keyset(http_get(port, "/.well-known/scitt-keys", host)[1])
    keys = {k[2]: vkeys.public_key_from_cose_key(k) for k in ks}
    bad = 0
    indexes: dict[int, bytes] = {}
    dup = 0
    todo = list(res.receipts)
    deadline = time.monotonic() + wait_s
    for leaf, loc in res.accepted:  # follow the 303s (bounded wait)
        while True:
            st, body, _ = http_get(port, loc, host)
            if st == 200:
                todo.append((leaf, body))
                break
            if st not in (202, 302) or time.monotonic() > deadline:
                bad += 1
                break
            time.sleep(0.2)
    for leaf, rec in todo:
        try:
            info = vreceipt.verify_inclusion_receipt(rec, leaf, keys)
        except Exception:  # noqa: BLE001 - counted
            bad += 1
            continue
        if info.index in indexes and indexes[info.index] != leaf:
            dup += 1
        indexes[info.index] = leaf
    distinct = len({leaf for leaf, _ in todo})
    size_after = tree_size(port, host)
    return {
        "acknowledged": len(res.receipts) + len(res.accepted),
        "receipts_verified": len(todo) - bad,
        "receipt_failures": bad,
        "index_collisions": dup,
        "size_before": size_before,
        "size_after": size_after,
        "sizes_add_up": size_after == size_before + distinct,
    }


# ---- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    ap.add_argument("--server", choices=("granian", "gunicorn"), default="granian",
                    help="granian: the production server of tlog serve (default); gunicorn gthread: the old setup")
    ap.add_argument("--workers", type=int, default=1, help="server processes for both servers (1: one sequencer, biggest batches)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--gthread-workers", type=int, default=2, help="the gunicorn gthread baseline's workers (0: none)")
    ap.add_argument("--gthread-threads", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1, help="measure the three servers this many times (order rotated)")
    ap.add_argument("--statements", type=int, default=20000, help="pre-signed statements per log run (bound)")
    ap.add_argument("--soak", action="store_true", help="also run the soak (64 clients, 60 s)")
    ap.add_argument("--soak-only", action="store_true")
    ap.add_argument("--soak-clients", type=int, default=64)
    ap.add_argument("--soak-duration", type=float, default=60.0)
    ap.add_argument("--soak-statements", type=int, default=100000)
    ap.add_argument("--url", help="an already running log (issuer key must be trusted: see --issuer-key-out)")
    ap.add_argument("--database-url", help="run the log on this (empty) PostgreSQL database instead of SQLite")
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.duration > 600 or args.soak_duration > 600:
        ap.error("bounded runs only: 0 < duration <= 600 s")

    work = Path(args.keep or tempfile.mkdtemp(prefix="tlog-loadgen-"))
    work.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "issuer.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    report: dict = {
        "conditions": {
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "workers": args.workers,
            "threads": args.threads,
            "server": args.server,
            "python": sys.version.split()[0],
        }
    }
    t = time.monotonic()
    n_stmt = 0 if args.soak_only else args.statements * args.rounds
    n_soak = args.soak_statements if (args.soak or args.soak_only) else 0
    all_st = sign_statements(key, n_stmt + n_soak, f"run-{os.getpid()}")
    report["conditions"]["signing_s"] = round(time.monotonic() - t, 1)
    log_env = {
        "TLOG_DATA_DIR": str(work / "data"),
        "TLOG_ISSUER_KEYS": json.dumps([{"path": str(work / "issuer.pem"), "iss": ["https://loadgen.example"]}]),
        "TLOG_ORIGIN": "loadgen.example/log",
        "TLOG_ISSUER": "https://loadgen.example",
        "TLOG_RATE_LIMIT": "0",
    }
    if args.database_url:
        log_env["TLOG_DATABASE_URL"] = args.database_url
        report["conditions"]["backend"] = "postgresql"
    else:
        report["conditions"]["backend"] = "sqlite"
    servers: list[Server] = []

    def start(app, env, server=None, workers=None, threads=None):
        port = free_port()
        s = Server(app, port, workers or args.workers, threads or args.threads, env, work / "server.log",
                   server or args.server)
        servers.append(s)
        s.wait_ready()
        return s

    try:
        if args.url:
            u = urllib.parse.urlsplit(args.url)
            if u.hostname not in ("127.0.0.1", "localhost", "::1"):
                ap.error("loopback only")
            log_port = u.port or 80
            log_srv = None
        else:
            log_srv = start("tlog.server.wsgi:app", log_env)
            log_port = log_srv.port
        if not args.soak_only:
            bare = start("tools.bare_flask:app", {}) if not args.url else None
            gthread = None
            if not args.url and args.gthread_workers > 0:
                gthread = start("tools.bare_flask:app", {}, "gunicorn", args.gthread_workers, args.gthread_threads)
            report["conditions"]["gthread"] = f"{args.gthread_workers} x {args.gthread_threads}" if gthread else None
            runs = []
            for rnd in range(args.rounds):
                chunk = all_st[rnd * args.statements : (rnd + 1) * args.statements]
                order = [k for k in ("bare", "gthread", "log") if k == "log" or {"bare": bare, "gthread": gthread}[k]]
                order = order[rnd % len(order):] + order[: rnd % len(order)]
                run: dict = {"order": order, "bare": None, "gthread": None}
                for k in order:
                    la = os.getloadavg()[0]
                    srv_pid = {"log": log_srv, "bare": bare, "gthread": gthread}[k]
                    srv_pid = srv_pid.proc.pid if srv_pid is not None else None
                    cpu0 = process_tree_cpu(srv_pid) if srv_pid else {}
                    if k == "log":
                        size0 = tree_size(log_port)
                        lg = drive(log_port, chunk, args.clients, args.duration, keep=True)
                        cpu1 = process_tree_cpu(srv_pid) if srv_pid else {}
                        run["log_check"] = verify_run(log_port, lg["_result"], size0)
                        try:
                            lg["integration"] = integration_stats(log_port, args.workers)
                        except Exception as e:  # noqa: BLE001 - diagnostics only
                            lg["integration"] = {"error": str(e)}
                        if os.environ.get("LOADGEN_METRICS"):
                            for _ in range(args.workers * 2):
                                m = http_get(log_port, "/metrics")[1].decode()
                                print("\n".join(l for l in m.splitlines() if "phase" in l or "integrations_total{" in l
                                                 or "latency_seconds_sum" in l or "latency_seconds_count" in l),
                                      file=sys.stderr)
                    else:
                        lg = drive((bare if k == "bare" else gthread).port, chunk, args.clients, args.duration)
                        cpu1 = process_tree_cpu(srv_pid) if srv_pid else {}
                    lg["cpu_us_per_answer"] = cpu_per_answer(cpu0, cpu1, lg["ok"])
                    lg.pop("_result")
                    lg["load1"] = round(la, 2)
                    run[k] = lg
                lg, b, g = run["log"], run["bare"], run["gthread"]
                run["ratio"] = round(lg["per_s"] / b["per_s"], 3) if b and b["per_s"] else None
                run["ratio_gthread"] = round(lg["per_s"] / g["per_s"], 3) if g and g["per_s"] else None
                runs.append(run)
            for srv in (bare, gthread):
                if srv is not None:
                    srv.stop()
                    servers.remove(srv)
            report["runs"] = runs
            for name in ("ratio", "ratio_gthread"):
                vals = [r[name] for r in runs if r[name] is not None]
                if vals:
                    report[name + "_median"] = statistics.median(vals)
        if args.soak or args.soak_only:
            chunk = all_st[n_stmt:]
            size0 = tree_size(log_port)
            s = drive(log_port, chunk, args.soak_clients, args.soak_duration, keep=True)
            res = s.pop("_result")
            s["5xx"] = sum(v for k, v in s["status"].items() if k >= 500)
            s["check"] = verify_run(log_port, res, size0)
            s["ok_overall"] = (
                s["5xx"] == 0 and s["conn_errors"] == 0 and s["check"]["receipt_failures"] == 0
                and s["check"]["index_collisions"] == 0 and s["check"]["sizes_add_up"]
            )
            report["soak"] = s
        report["conditions"]["loadavg_end"] = os.getloadavg()
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["conditions"]
        print(f"conditions: {c['backend']}, {c['cpus']} CPUs, load {c['loadavg_start']} -> {c.get('loadavg_end')}, {c['server']} "
              f"{c['workers']} workers x {c['threads']} threads, statements signed in {c['signing_s']} s")
        if c.get("gthread"):
            print(f"baseline: bare Flask under gunicorn gthread {c['gthread']}")
        for i, r in enumerate(report.get("runs", [])):
            for k, label in (("bare", f"bare flask ({c['server']})"), ("gthread", "bare flask (gthread)"), ("log", "log")):
                x = r[k]
                if x is None:
                    continue
                extra = f" conn errors {x['conn_errors']}" if x["conn_errors"] else ""
                print(f"[{i}] {label:<21} {x['per_s']:>7}/s p50 {x['p50_ms']} ms p99 {x['p99_ms']} ms {x['status']}"
                      f"{extra} load {x['load1']}{' (statements exhausted)' if x['exhausted'] else ''}"
                      f"{'' if not x.get('cpu_us_per_answer') else ' server CPU us/answer ' + str(x['cpu_us_per_answer'])}")
            print(f"[{i}] log integration (cumulative): {r['log'].get('integration')}")
            print(f"[{i}] log/bare {r['ratio']}, log/gthread {r['ratio_gthread']}; check: {r['log_check']}")
        if "ratio_median" in report:
            print(f"log/bare ({c['server']}, median over rounds): {report['ratio_median']}  (target >= 0.8)")
        if "ratio_gthread_median" in report:
            print(f"log/bare under gunicorn gthread (median over rounds): {report['ratio_gthread_median']}  (target >= 1.5)")
        if "soak" in report:
            s = report["soak"]
            print(f"soak: {s['clients']} clients {s['elapsed_s']} s: {s['per_s']}/s p50 {s['p50_ms']} ms "
                  f"p99 {s['p99_ms']} ms status {s['status']} 5xx {s['5xx']} conn errors {s['conn_errors']}")
            print(f"soak check: {s['check']} -> {'OK' if s['ok_overall'] else 'FAILED'}")
    ok = all(r["log_check"]["receipt_failures"] == 0 and r["log_check"]["sizes_add_up"] for r in report.get("runs", []))
    if "soak" in report:
        ok = ok and report["soak"]["ok_overall"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
