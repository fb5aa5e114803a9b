"""``twi-witness``: the witness's command line and server process (granian through
:mod:`serving.httpd`, one worker). See :mod:`witness`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable

from verifier import VerificationError
from verifier.files import private_dir, write_private
from verifier.note import CosignatureSigner, NoteVerifier

from .core import MAX_BODY, Witness
from .http import create_app

__all__ = ["main", "rsgi_app"]

_DESCRIPTION = "A C2SP tlog-witness v1.0.0 witness: POST <prefix>/add-checkpoint."


def _load_or_create_key(data_dir: Path, name: str) -> CosignatureSigner:
    p = data_dir / "witness.skey"
    if p.exists():
        return CosignatureSigner.from_skey(p.read_text(encoding="utf-8").strip())
    s = CosignatureSigner.generate(name)
    if not write_private(p, s.skey + "\n"):  # 0600 from the first byte, 0700 directory
        return CosignatureSigner.from_skey(p.read_text(encoding="utf-8").strip())  # another process won
    return s


_ARGV_ENV = "TLOG_WITNESS_ARGV"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="twi-witness", description=_DESCRIPTION)
    ap.add_argument("--data-dir", required=True, help="state (witness.db) and key (witness.skey)")
    ap.add_argument("--log-vkey", action="append", required=True, help="trusted log verifier key (repeatable)")
    ap.add_argument("--origin", action="append", default=[],
                    help="origin for the preceding keys (default: each key's name)")
    ap.add_argument("--name", default="witness.local", help="witness key name when a key is generated")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--prefix", default="", help="URL prefix for add-checkpoint")
    ap.add_argument("--threads", type=int, default=8, help="Python threads serving requests")
    ap.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive a request head")
    ap.add_argument("--body-timeout", type=float, default=10.0, help="seconds to receive a request body (then 408)")
    ap.add_argument("--log-format", choices=("plain", "json"), default=None, help="log lines (default plain)")
    return ap


def _open(args) -> tuple[Witness, CosignatureSigner] | int:
    try:
        keys = [NoteVerifier.from_vkey(k) for k in args.log_vkey]
    except VerificationError as e:
        print(f"error: --log-vkey: {e}", file=sys.stderr)
        return 2
    logs: dict[str, list[NoteVerifier]] = {}
    if args.origin:
        if len(args.origin) != 1 and len(args.origin) != len(keys):
            print("error: give one --origin, or one per --log-vkey", file=sys.stderr)
            return 2
        origins = args.origin * len(keys) if len(args.origin) == 1 else args.origin
    else:
        origins = [k.name for k in keys]
    for o, k in zip(origins, keys):
        logs.setdefault(o, []).append(k)
    d = private_dir(args.data_dir)
    signer = _load_or_create_key(d, args.name)
    return Witness(d / "witness.db", logs, [signer]), signer


def rsgi_app():
    """Factory for the production server (a granian worker): the arguments come from main()."""
    from serving.httpd import WSGIOverRSGI
    from serving.logs import setup_logging

    args = _parser().parse_args(json.loads(os.environ[_ARGV_ENV]))
    setup_logging(args.log_format)
    opened = _open(args)
    if isinstance(opened, int):
        raise SystemExit(opened)
    w, _ = opened
    return WSGIOverRSGI(create_app(w, args.prefix), threads=args.threads, max_body=MAX_BODY,
                        body_timeout=args.body_timeout)


def main(argv: Iterable[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = _parser().parse_args(argv)
    opened = _open(args)
    if isinstance(opened, int):
        return opened
    _, signer = opened
    print(f"witness key: {signer.vkey}", file=sys.stderr)
    from serving import httpd
    from serving.logs import dictconfig, setup_logging

    setup_logging(args.log_format)
    os.environ[_ARGV_ENV] = json.dumps(argv)
    httpd.run("witness.cli:rsgi_app", host=args.host, port=args.port, workers=1,
              header_timeout=args.header_timeout, log_dictconfig=dictconfig(args.log_format or "plain"))
    return 0
