"""Client commands of ``tlog``: talk to a running log over HTTP.

    tlog register FILE --log URL [--out TS] [--receipt FILE] [--log-key FILE] [--deadline S]
    tlog info --log URL [--json | --field NAME] [--save-keys FILE]

``register`` sends any COSE_Sign1 Signed Statement (``POST /entries``), waits for its receipt
(retrying 429/5xx/connection errors honouring Retry-After, polling while pending: the SCRAPI
client of :mod:`verifier.scrapi`), verifies the receipt against the log's keys (pinned with
``--log-key``, else fetched from ``/.well-known/scitt-keys``) and writes the Transparent Statement
(the statement with the receipt in its unprotected header, label 394). ``info`` prints what a
relying party, monitor or witness needs: origin, checkpoint verifier key, receipt key ids (and
``--save-keys`` writes the log's COSE_KeySet, for verifying receipts offline).

Errors are one line on stderr; exit 0 done, 1 refused or unreachable, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class ClientError(Exception):
    """A client command failed; ``code`` is the exit status."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.code = code


def _get(url: str, accept: str, timeout: float) -> tuple[str, bytes]:
    import requests

    from verifier.http import capped_response

    try:  # bounded: a timeout, no redirects, at most 4 MiB read
        r = capped_response(requests.get(url, headers={"Accept": accept}, timeout=timeout, allow_redirects=False,
                                         stream=True), 4 << 20, 3 * timeout)
    except (requests.RequestException, OSError) as e:
        raise ClientError(f"cannot reach {url}: {type(e).__name__}: {str(e)[:200]}") from None
    if r.status_code != 200:
        raise ClientError(f"GET {url}: HTTP {r.status_code}")
    return r.headers.get("Content-Type", ""), r.content


def log_info(base: str, timeout: float = 10.0, save_keys: str | None = None) -> dict:
    """Origin, checkpoint vkey and receipt key ids of the log at ``base``."""
    from verifier import VerificationError
    from verifier import cbor as vcbor
    from verifier import keys as vkeys

    base = base.rstrip("/")
    ctype, body = _get(f"{base}/.well-known/transparency-configuration", "application/json", timeout)
    try:  # JSON when the log offers it, CBOR (the SCRAPI default) otherwise
        conf = json.loads(body) if ctype.startswith("application/json") else vcbor.loads(body, max_depth=8)
    except (ValueError, VerificationError) as e:
        raise ClientError(f"{base}: transparency configuration unreadable ({e})") from None
    if not isinstance(conf, dict) or not isinstance(conf.get("checkpoint_vkey"), str):
        raise ClientError(f"{base}: transparency configuration without checkpoint_vkey")
    _, keyset = _get(f"{base}/.well-known/scitt-keys", "application/cbor", timeout)
    try:
        kids = sorted(k.hex() for k in vkeys.parse_public_keys(keyset))
    except VerificationError as e:
        raise ClientError(f"{base}: /.well-known/scitt-keys unreadable ({e})") from None
    if save_keys:
        Path(save_keys).write_bytes(keyset)
    return {"log": base, "origin": conf.get("checkpoint_origin"), "checkpoint_vkey": conf["checkpoint_vkey"],
            "receipt_kids": kids, "issuer": conf.get("issuer"),
            "registration_policy": conf.get("registration_policy")}


def cmd_info(a: argparse.Namespace) -> int:
    info = log_info(a.log, save_keys=a.save_keys)
    if a.field:
        v = info.get(a.field)
        print(" ".join(v) if isinstance(v, list) else v)
    elif a.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"origin              {info['origin']}")
        print(f"checkpoint vkey     {info['checkpoint_vkey']}")
        print(f"receipt key ids     {' '.join(info['receipt_kids'])}")
        print(f"issuer              {info['issuer']}")
        print(f"registration policy {info['registration_policy']}")
    return 0


def cmd_register(a: argparse.Namespace) -> int:
    from verifier import VerificationError
    from verifier import keys as vkeys
    from verifier.scrapi import ScrapiClient, ScrapiError

    try:
        statement = Path(a.file).read_bytes()
    except OSError as e:
        raise ClientError(f"cannot read {a.file}: {e.strerror}", 2) from None
    log_keys = None
    if a.log_key:
        try:
            log_keys = vkeys.load_public_keys(a.log_key)
        except (OSError, VerificationError) as e:
            raise ClientError(f"cannot read log key {a.log_key}: {e}", 2) from None
    client = ScrapiClient(a.log, log_keys=log_keys, deadline=a.deadline, max_attempts=a.attempts)
    try:
        reg = client.register(statement)
    except ScrapiError as e:  # (a VerificationError too: first)
        raise ClientError(f"not registered: {e.detail}") from None
    except VerificationError as e:  # the file is not a Signed Statement: nothing was sent
        raise ClientError(f"{a.file} is not a COSE_Sign1 Signed Statement ({e})", 2) from None
    out = Path(a.out) if a.out else Path(a.file).with_name(Path(a.file).name + ".ts.cose")
    out.write_bytes(reg.transparent_statement)
    if a.receipt:
        Path(a.receipt).write_bytes(reg.receipt)
    print(json.dumps({"entry_id": reg.entry_id, "index": reg.index, "entry": reg.entry_url,
                      "transparent_statement": str(out), "receipt": a.receipt}, indent=2))
    return 0


def add_client_commands(sub) -> None:
    r = sub.add_parser("register", help="register a Signed Statement file with a running log, write its receipt")
    r.add_argument("file", help="a COSE_Sign1 Signed Statement (application/cose)")
    r.add_argument("--log", required=True, help="the log's base URL, e.g. http://127.0.0.1:8000")
    r.add_argument("--out", help="write the Transparent Statement here (default FILE.ts.cose)")
    r.add_argument("--receipt", help="also write the bare receipt (COSE) here")
    r.add_argument("--log-key", help="verify the receipt with these pinned log keys (COSE_KeySet/PEM); "
                                     "default: fetched from /.well-known/scitt-keys")
    r.add_argument("--deadline", type=float, default=60.0, help="give up after this many seconds (default 60)")
    r.add_argument("--attempts", type=int, default=8, help="attempts per request on 429/5xx/errors (default 8)")
    r.set_defaults(func=cmd_register)
    i = sub.add_parser("info", help="print a running log's origin, checkpoint vkey and receipt key ids")
    i.add_argument("--log", required=True, help="the log's base URL")
    i.add_argument("--json", action="store_true")
    i.add_argument("--field", choices=("origin", "checkpoint_vkey", "receipt_kids", "issuer", "registration_policy"),
                   help="print only this value (for scripts)")
    i.add_argument("--save-keys", metavar="FILE", help="write the log's receipt keys (COSE_KeySet) here")
    i.set_defaults(func=cmd_info)


def run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except ClientError as e:
        print(f"tlog {args.cmd}: {e}", file=sys.stderr)
        return e.code
