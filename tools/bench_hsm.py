"""Receipt signatures per second: the receipt key in a file vs in a PKCS#11 token (SoftHSM2).

    python3 tools/bench_hsm.py [--seconds 3] [--threads 1]

Each figure is ``LogService.sign_head`` (the one receipt signature per tree head: protected header,
Sig_structure, ES256) in a loop, on a log made in a temporary directory; the token is a fresh
SoftHSM2 token in that directory (``softhsm2-util`` and the library must be installed). Also the
checkpoint (Ed25519 note) signature. Print the load average with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def rate(fn, seconds: float, threads: int) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def run(i):
        n = 0
        while time.monotonic() < stop:
            fn(n)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if module is None:
        print("SoftHSM2 is not installed (apt-get install softhsm2)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tokens").mkdir()
        (tmp / "softhsm2.conf").write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\n"
                                           "log.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(tmp / "softhsm2.conf")
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234",
                        "--so-pin", "5678"], check=True, capture_output=True)
        from tlog.config import Config
        from tlog.service import LogService

        root = bytes(32)
        results = {}
        for name, extra in (("file", {}), ("pkcs11", {"pkcs11_module": module, "pkcs11_token": "bench",
                                                       "pkcs11_pin": "1234"})):
            cfg = Config.load(env={}, overrides=dict(data_dir=str(tmp / name), origin="bench.example/log", **extra))
            svc = LogService(cfg, integrator="thread")
            try:
                svc.sign_head(1, root)  # warm
                results[name] = (rate(lambda n: svc.sign_head(n, root), args.seconds, args.threads),
                                 rate(lambda n: svc.keys.note_signer.sign(b"bench.example/log\n%d\n" % n),
                                      args.seconds, args.threads))
            finally:
                svc.close()
    load = os.getloadavg()
    print(f"receipt signatures/s ({args.threads} thread(s), {args.seconds:g} s each; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    for name, (r, c) in results.items():
        print(f"  {name:7s} receipt (ES256) {r:9.0f}/s   checkpoint (Ed25519) {c:9.0f}/s")
    print(f"  pkcs11/file receipt ratio {results['pkcs11'][0] / results['file'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
