"""``tlog``: run and administer the transparency log.

    tlog serve --data-dir DIR [--host 127.0.0.1] [--port 8000] [--issuer-key PEM ...]
               [--trust-anchor PEM ...] [--database-url postgresql://...] [--config FILE]
               [--workers 2] [--threads 16] [...]
    tlog init --data-dir DIR [--origin ORIGIN]     create the log's keys, print kid and vkey
    tlog rotate-key --data-dir DIR                 retire the receipt key, create a new one
    tlog policy show|set --data-dir DIR [--issuer-key PEM ...] [...]
                                                   the registration policy in force / a new one
    tlog register FILE --log URL [--out TS]        register a Signed Statement, write its receipt
    tlog info --log URL                            a running log's origin, vkey, receipt key ids
    tlog shard close|status --data-dir DIR --successor URL [--out FILE]
                                                   close the log (shards by time), its final checkpoint

``serve`` runs granian (:mod:`serving.httpd`: HTTP parsed in Rust with header and body
timeouts; ``--workers`` processes, each opening its own Log on the shared database and its own
integrator process; ``--threads`` Python threads each) with the app of :mod:`tlog.server`. The
same settings can come from a TOML/JSON config file or ``TLOG_*`` environment variables (see
:mod:`tlog.config`). Once a worker answers, ``serve`` prints one ready line on stdout
(:mod:`tlog.ready`). ``register`` and ``info`` are clients (:mod:`tlog.clientcmd`).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys

from .config import Config, ConfigError


def _add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML or JSON file with the settings below")
    p.add_argument("--data-dir", help="directory for keys and the SQLite database")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--database-url", help="postgresql://... (default: SQLite in the data dir)")
    p.add_argument("--origin", help="checkpoint origin (fixed at the first start)")
    p.add_argument("--issuer", help="the log's issuer URL in receipts (default http://HOST:PORT)")
    p.add_argument("--issuer-key", action="append", dest="issuer_keys", default=[],
                   help="trust an issuer public key (PEM/DER/COSE_Key) for the issuer identities it may claim: "
                        "JSON {\"path\": ..., \"iss\": [...]} (iss required); repeatable")
    p.add_argument("--trust-anchor", action="append", dest="trust_anchors", default=[],
                   help="trust this X.509 root for x5chain statements (PEM), or JSON {\"path\": ..., \"iss\": [...]}; "
                        "repeatable")
    p.add_argument("--allowed-alg", action="append", dest="allowed_algs", type=int, default=[],
                   help="COSE algorithm accepted in statements; repeatable (default: all supported)")
    p.add_argument("--allowed-content-type", action="append", dest="allowed_content_types", default=[],
                   help="payload content type accepted; repeatable (default: any)")
    p.add_argument("--max-statement-size", type=int)
    p.add_argument("--max-body", type=int, help="request body limit in bytes (413 above)")
    p.add_argument("--register-wait", type=float, help="seconds POST /entries waits before 303")
    p.add_argument("--pending-status", type=int, choices=(202, 302), help="GET /entries/<id> while pending")
    p.add_argument("--rate-limit", type=float, help="requests/s per client address on /entries (0 = off)")
    p.add_argument("--rate-burst", type=int)
    p.add_argument("--queue-limit", type=int, help="not-yet-integrated entries per worker before 503")
    p.add_argument("--max-batch", type=int)
    p.add_argument("--max-wait", type=float, help="group-commit linger in seconds")
    p.add_argument("--witness", action="append", dest="witnesses", default=[], metavar="URL=VKEY",
                   help="a C2SP tlog-witness: its URL prefix (the log POSTs to URL/add-checkpoint, so give "
                        "e.g. http://127.0.0.1:8100, not .../add-checkpoint) and its cosignature vkey (repeatable)")
    p.add_argument("--pkcs11-module", help="PKCS#11 library: the signing keys live in that token (tlog.hsm)")
    p.add_argument("--pkcs11-token", help="PKCS#11 token label (PIN: TLOG_PKCS11_PIN or pkcs11_pin in --config)")
    p.add_argument("--witness-quorum", type=int, help="cosignatures /checkpoint requires (k of n, 0 = none)")
    p.add_argument("--shard-close-size", type=int, help="close to registrations at this tree size (0 = never)")
    p.add_argument("--shard-close-at", help="close to registrations at this ISO 8601 time (UTC if no zone)")
    p.add_argument("--shard-successor", help="URL of the successor log, named to registrants once closed")
    p.add_argument("--shard-predecessor", help="at creation: record this predecessor (file from 'tlog shard close "
                                               "--out') as entry 0")


_SETTING_NAMES = set(Config.field_names())


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {k: v for k, v in vars(args).items() if k in _SETTING_NAMES}
    return Config.load(file=getattr(args, "config", None), overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from serving.logs import setup_logging

    setup_logging(cfg.log_format)  # before anything logs: one format for every process
    from . import startup

    # everything is checked here, before the workers start (one line and exit 2 otherwise);
    # the keys of a new log are made here, once (workers would race for them otherwise)
    from .keys import TrustStore, make_dirs

    startup.check_data_dir(cfg.data_path)
    TrustStore.load(cfg.issuer_keys, cfg.trust_anchors)  # KeyError_ names a bad file
    make_dirs(cfg.data_path)
    lock = startup.DataDirLock(cfg.data_path).acquire()  # held until this process exits
    try:
        startup.check_port(cfg.host, cfg.port)
        ident = startup.preflight(cfg)
        if ident.created:
            _first_start(cfg)
    except BaseException:
        lock.release()
        raise
    lk = ident.keys
    cfg.origin, cfg.issuer = lk.origin, ident.issuer

    import os

    # metrics of all worker and integrator processes in one directory, summed by any scrape
    # (set before prometheus_client is imported: the workers are forked from this process)
    from .metrics import fresh_dir

    metrics_dir = fresh_dir()
    from serving.logs import dictconfig, setup_logging
    from .ready import announce_when_ready, local_url
    from serving import httpd

    setup_logging(cfg.log_format)
    # every worker process reads the same settings from the environment (tlog.server.wsgi:rsgi_app)
    os.environ.update(cfg.to_env())
    log = logging.getLogger("tlog.serve")
    log.info("starting", extra={"fields": {
        "origin": lk.origin, "url": f"http://{cfg.host}:{cfg.port}", "server": "granian",
        "workers": cfg.workers, "threads": cfg.threads, "header_timeout": cfg.header_timeout,
        "body_timeout": cfg.body_timeout, "receipt_kid": lk.receipt.kid.hex(), "database":
        "postgresql" if cfg.database_url else "sqlite", "log_format": cfg.log_format}})
    try:
        httpd.run("tlog.server.wsgi:rsgi_app", host=cfg.host, port=cfg.port, workers=cfg.workers,
                  header_timeout=cfg.header_timeout, log_dictconfig=dictconfig(cfg.log_format),
                  access_log=False,
                  # the socket is bound, the workers not yet forked: the ready-line watcher process
                  on_startup=lambda: announce_when_ready(local_url(cfg.host, cfg.port)))
    finally:
        lock.release()
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _first_start(cfg) -> str:
    """The log as its first start makes it (state, the policy of these options), here, once,
    not in several workers at once; returns the policy in force."""
    from .service import LogService

    svc = LogService(cfg, integrator="thread")
    try:
        return svc.policy_id
    finally:
        svc.close()


def cmd_init(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from . import startup

    ident = startup.preflight(cfg)
    lk = ident.keys
    policy_id = _first_start(cfg)
    print(f"origin          {lk.origin}")
    print(f"issuer          {ident.issuer}")
    print(f"checkpoint vkey {lk.vkey}")
    print(f"receipt kid     {lk.receipt.kid.hex()} "
          f"({base64.urlsafe_b64encode(lk.receipt.kid).rstrip(b'=').decode()})")
    print(f"policy          {policy_id}")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    """``tlog policy show`` / ``tlog policy set [policy options]``: the registration policy in
    force, a log-wide state; ``set`` registers a new one (the options given replace those fields)."""
    import json

    cfg = config_from_args(args)
    from . import startup
    from .logstate import configured_policy
    from .service import LogService

    startup.preflight(cfg, create=False, check_policy=False)
    svc = LogService(cfg, integrator="thread", check_policy=False)
    try:
        if args.action == "set":
            svc.set_policy(configured_policy(cfg, base=svc.policy))
        index, entry_id, policy = svc.state.policy
        print(json.dumps({"entry": entry_id, "index": index, **policy.summary()}, indent=2))
    finally:
        svc.close()
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from .logstate import rotate
    from .storage import open_storage

    storage = open_storage(cfg.storage_url(), **cfg.storage_options())
    try:
        old, new = rotate(storage, cfg)
    finally:
        storage.close()
    print(f"retired {old.hex()}\nactive  {new.hex()}\n"
          "(running servers switch once keys/receipt.pem holds the new key; copy keys/ to every host)")
    return 0


def cmd_shard(args: argparse.Namespace) -> int:
    """``tlog shard close``: close the log to registrations (410 naming the successor), wait until
    the tree settles, record and write its final checkpoint for the successor (tlog.shard);
    ``tlog shard status``: whether the log is closed, and its final checkpoint."""
    import json

    cfg = config_from_args(args)
    from . import shard
    from .logstate import open_identity
    from .storage import open_storage

    storage = open_storage(cfg.storage_url(), **cfg.storage_options())
    try:
        ident = open_identity(storage, cfg, create=False)
        if args.action == "status":
            final = storage.meta(shard.META_FINAL)
            print(json.dumps({"origin": ident.keys.origin, "closed": shard.closed_state(storage),
                              "final": json.loads(final) if final else None}, indent=1))
            return 0
        successor = args.successor or cfg.shard_successor
        if not successor:
            raise ConfigError("tlog shard close needs --successor URL (the log registrants move to)")
        shard.close(storage, successor=successor, reason="command")
        rec = shard.finish_close(storage, url=cfg.public_url or ident.issuer, quiet=args.quiet)
    finally:
        storage.close()
    text = json.dumps(rec, indent=1, sort_keys=True) + "\n"
    if args.out:
        from verifier.monitor import write_atomic

        write_atomic(args.out, text.encode())
        print(f"closed {rec['origin']} at size {rec['checkpoint'].split(chr(10))[1]}; final checkpoint in {args.out} "
              f"(start the successor with shard_predecessor = {args.out})")
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tlog", description="TWI provenance transparency log")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the log over HTTP (granian, serving.httpd)")
    _add_settings(s)
    s.add_argument("--workers", type=int, help="server processes, each with its integrator (default 2)")
    s.add_argument("--threads", type=int, help="Python threads per process running requests (default 16)")
    s.add_argument("--header-timeout", type=float, help="seconds to receive a request head (default 10)")
    s.add_argument("--body-timeout", type=float, help="seconds to receive a request body, then 408 (default 30)")
    s.add_argument("--log-format", choices=("plain", "json"), help="log lines as key=value (default) or JSON")
    s.set_defaults(func=cmd_serve)
    i = sub.add_parser("init", help="create the log's keys and print them")
    _add_settings(i)
    i.set_defaults(func=cmd_init)
    r = sub.add_parser("rotate-key", help="retire the receipt key and create a new one")
    _add_settings(r)
    r.set_defaults(func=cmd_rotate)
    pol = sub.add_parser("policy", help="show or change the registration policy in force (log-wide)")
    pol.add_argument("action", choices=("show", "set"))
    _add_settings(pol)
    pol.set_defaults(func=cmd_policy)
    sh = sub.add_parser("shard", help="close this log (shards by time) and write its final checkpoint for the successor")
    sh.add_argument("action", choices=("close", "status"))
    sh.add_argument("--successor", help="URL of the log that takes the registrations (named in the 410 answers)")
    sh.add_argument("--out", help="write the predecessor record (final checkpoint, keys) to this file")
    sh.add_argument("--quiet", type=float, default=2.0,
                    help="seconds without a new entry before the tree counts as settled (default 2)")
    _add_settings(sh)
    sh.set_defaults(func=cmd_shard)
    from .clientcmd import add_client_commands

    add_client_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from serving.logs import setup_logging

    setup_logging(if_unconfigured=True)  # `serve` configures its processes itself
    args = build_parser().parse_args(argv)
    if args.cmd in ("register", "info"):
        from .clientcmd import run

        return run(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - start-up and command errors: one line, no traceback
        from .keys import KeyError_
        from .logstate import StartupError

        text = " ".join(str(e).split())  # one line, whatever the message
        if isinstance(e, (ConfigError, KeyError_, StartupError)):
            print(f"tlog: {text}", file=sys.stderr)
        else:
            print(f"tlog: {type(e).__name__}: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
