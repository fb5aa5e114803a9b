#!/usr/bin/env python3
"""Server time per explorer page (p50/p99) and page weight, on a log of ``--entries`` entries.

    python tools/bench_explorer.py --entries 1000000      # the figure issue 15 asks for (slow to build)
    python tools/bench_explorer.py --entries 100000 --requests 200

Builds a SQLite log in a temporary directory (or ``--data-dir``, reused when it already holds
that many entries): signed ES256 statements, one in 100 a public Credential Provenance record
(indexed like the server indexes it), appended in batches through the core (``Log.append``, the
registration policy is not in the timed part). Then times each page through the real Flask app
(``tlog.server.create_app``, the test client: WSGI in process, no sockets), ``--requests`` times
each, for random entries / sizes, and prints one JSON line with p50/p99 (ms), bytes of HTML, and
the load average. The page's own script and style sheet are weighed too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from issuer.provenance import encode_cpr, sign_cpr  # noqa: E402
from tlog.config import Config  # noqa: E402
from tlog.server import create_app  # noqa: E402
from tlog.attrs import ATTR_ISS, ATTR_ISS_SUB, iss_sub_key  # noqa: E402
from tlog.service import LogService  # noqa: E402
from tlog.twi import TWI  # noqa: E402
from tlog.twi.index import attrs_for_statement  # noqa: E402
from verifier import cose  # noqa: E402
from verifier import keys as vkeys  # noqa: E402
from verifier.credential import CPR_TYPE  # noqa: E402
from verifier.statement import SignedStatement  # noqa: E402

ISS = "https://issuer.bench.example"


class _Ident:
    def __init__(self, key):
        self.key, self.id, self.kid = key, ISS, vkeys.thumbprint(key.public_key())


def _statement(ident, i: int) -> bytes:
    if i % 100 == 0:
        rid = f"rid-{i}"
        rec = {"type": CPR_TYPE, "rid": rid, "iat": 1_780_000_000 + i, "credential": {
            "format": "wit", "iss": "https://wit.bench.example", "jti": f"jti-{i}",
            "sub": f"spiffe://bench.example/w{i % 97}", "digest": {"sha256": f"{i:064x}"}}}
        return sign_cpr(ident, encode_cpr(rec), rid=rid, sub=f"spiffe://bench.example/w{i % 97}",
                        iat=1_780_000_000 + i)
    prot = {1: -7, 3: "application/json", 4: ident.kid, 15: {1: ISS, 2: f"workload/{i % 997}", 6: 1_780_000_000 + i}}
    return cose.sign1(ident.key, prot, b'{"build": %d}' % i)


def build(svc: LogService, n: int, batch: int) -> float:
    ident = _Ident(ec.generate_private_key(ec.SECP256R1()))
    t0 = time.monotonic()
    start = svc.tree_size()
    i = start
    while i < n:
        items = []
        for j in range(i, min(n, i + batch)):
            st = SignedStatement.parse(_statement(ident, j))
            attrs = {("kind", "statement"), ("policy", svc.policy_id), (ATTR_ISS, st.iss),
                     (ATTR_ISS_SUB, iss_sub_key(st.iss, st.sub))} | set(attrs_for_statement(st))
            items.append((st.leaf_input, st.statement_bytes, sorted(attrs)))
        svc.log.append(items)
        i += len(items)
        print(f"  {i} entries", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return time.monotonic() - t0


def timed(client, urls: list[str]) -> dict:
    times, sizes = [], []
    for u in urls:
        t = time.perf_counter()
        r = client.get(u, headers={"Accept": "text/html"})
        body = r.data
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (u, r.status_code, body[:300])
        sizes.append(len(body))
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "bytes_median": int(statistics.median(sizes)), "n": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200, help="requests per page")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--data-dir", help="log directory (kept; reused when it already holds --entries)")
    a = ap.parse_args(argv)
    tmp = None
    if a.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-explorer-")
        a.data_dir = tmp.name
    cfg = Config.load(env={}, overrides=dict(data_dir=str(Path(a.data_dir) / "log"), origin="bench.example/log",
                                             issuer="https://log.bench.example"))
    svc = LogService(cfg, personality=TWI)
    try:
        build_s = build(svc, a.entries, a.batch)
        app = create_app(cfg, service=svc)
        client = app.test_client()
        size = svc.tree_size()
        rnd = random.Random(7)
        entry_ids = [svc.log.leaf_input(rnd.randrange(size)).hex() for _ in range(a.requests)]
        cprs = [rnd.randrange(max(1, size // 100)) * 100 for _ in range(a.requests)]
        pages = {
            "overview": ["/explorer/"] * a.requests,
            "root_html": ["/"] * a.requests,
            "entries_newest": ["/explorer/entries"] * a.requests,
            "entries_deep": [f"/explorer/entries?before={rnd.randrange(1, size)}" for _ in range(a.requests)],
            "entry": [f"/explorer/entries/{e}" for e in entry_ids],
            "search_rid": [f"/explorer/search?kind=rid&a=rid-{i}" for i in cprs],
            "search_iss_jti": [f"/explorer/search?kind=iss_jti&a=https://wit.bench.example&b=jti-{i}" for i in cprs],
            "search_sha256": [f"/explorer/search?kind=sha256&a={i:064x}" for i in cprs],
            "consistency": [f"/explorer/consistency?from={rnd.randrange(1, size)}&to={size}"
                            for _ in range(a.requests)],
        }
        out = {"entries": size, "build_s": round(build_s, 1), "requests_per_page": a.requests,
               "loadavg_before": os.getloadavg()}
        for name, urls in pages.items():
            client.get(urls[0], headers={"Accept": "text/html"})  # warm
            out[name] = timed(client, urls)
        for name in ("explorer.js", "explorer.css"):
            out[name + "_bytes"] = len(client.get(f"/explorer/static/{name}").data)
        out["loadavg_after"] = os.getloadavg()
        print(json.dumps(out))
    finally:
        svc.close()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
