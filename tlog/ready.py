"""The ready line of ``tlog serve``: printed once, when the log answers on its address.

``tlog serve`` starts a small watcher process from the gunicorn master (``when_ready``: the socket
is bound; a process, not a thread: the master forks its workers after this hook, and a thread
holding a lock at fork time deadlocks the worker). The watcher polls the log's own
``/.well-known/transparency-configuration`` until a worker answers, prints one line on stdout with
what a user needs next, and exits::

    tlog: ready url=http://127.0.0.1:8000 origin=127.0.0.1:8000/tlog vkey=127.0.0.1:8000/tlog+1a2b3c4d+A... issuer_kids=9f0e...,77aa... receipt_kids=3c5d...

Every value is what the running log serves: origin and checkpoint vkey from its transparency
configuration, ``issuer_kids`` (RFC 9679 thumbprints) from the registration policy in force (its
policy entry, ``-`` when it trusts no issuer key: then only x5chain statements under trust anchors
are admitted), ``receipt_kids`` from ``/.well-known/scitt-keys``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def local_url(host: str, port: int) -> str:
    """A URL that reaches a server bound to ``host`` from this machine."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _get(url: str, accept: str, timeout: float = 5.0) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the log's own loopback URL
        return r.read()


def served_identity(url: str) -> dict:
    """What the log at ``url`` serves: its transparency configuration, the issuer key ids of the
    policy in force, its receipt key ids. Raises OSError/ValueError while it does not answer."""
    from verifier import VerificationError
    from verifier import cbor as vcbor
    from verifier import keys as vkeys
    from verifier.statement import SignedStatement

    conf = json.loads(_get(url + "/.well-known/transparency-configuration", "application/json"))
    try:
        receipt_kids = sorted(k.hex() for k in vkeys.parse_public_keys(_get(url + "/.well-known/scitt-keys",
                                                                            "application/cbor")))
        issuer_kids: list[str] = []
        if conf.get("registration_policy"):
            st = SignedStatement.parse(_get(f"{url}/entries/{conf['registration_policy']}/statement",
                                            "application/cose"))
            doc = vcbor.loads(st.payload, max_depth=16)
            issuer_kids = sorted(vkeys.thumbprint(vkeys.public_key_from_cose_key(k)).hex()
                                 for k in doc.get("issuer-keys", []))
    except VerificationError as e:
        raise ValueError(str(e)) from None
    return {"conf": conf, "issuer_kids": issuer_kids, "receipt_kids": receipt_kids}


def ready_line(url: str, ident: dict) -> str:
    conf = ident["conf"]
    return (f"tlog: ready url={url} origin={conf.get('checkpoint_origin')} vkey={conf.get('checkpoint_vkey')} "
            f"issuer_kids={','.join(ident['issuer_kids']) or '-'} receipt_kids={','.join(ident['receipt_kids'])}")


def wait_ready(url: str, timeout: float = 300.0, interval: float = 0.05, parent: int | None = None) -> dict | None:
    """:func:`served_identity` once the log at ``url`` answers; None on timeout or when ``parent``
    (the server's pid) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if parent is not None and os.getppid() != parent:
            return None
        try:
            return served_identity(url)
        except (OSError, ValueError, urllib.error.URLError):
            pass
        time.sleep(interval)
    return None


def announce_when_ready(url: str, *, timeout: float = 300.0) -> subprocess.Popen:
    """Start the watcher process that prints the ready line once the log answers at ``url``."""
    return subprocess.Popen([sys.executable, "-m", "tlog.ready", url, str(timeout), str(os.getpid())],
                            stdin=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    url, timeout, parent = argv[0], float(argv[1]), int(argv[2])
    ident = wait_ready(url, timeout, parent=parent)
    if ident is None:
        if os.getppid() == parent:
            print(f"tlog: not ready after {timeout:.0f} s at {url} (see the log above)", file=sys.stderr, flush=True)
        return 1
    print(ready_line(url, ident), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
