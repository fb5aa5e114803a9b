"""The ``monitor`` and ``audit`` subcommands of ``twi-verify``."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import VerificationError
from ..note import NoteVerifier
from .alerts import MonitorAlert, Reporter, Unreachable
from .audit import Auditor, Progress
from .checks import _verify_note
from .follow import Monitor
from .httplog import HttpLog
from .shards import follow_chain, statement_keys_of
from .statements import StatementChecker


def _read_vkey(s: str) -> NoteVerifier:
    if s.startswith("@"):
        s = Path(s[1:]).read_text(encoding="utf-8").strip()
    return NoteVerifier.from_vkey(s)


def _open_log(args: argparse.Namespace) -> "tuple[NoteVerifier, HttpLog] | int":
    """The log's note verifier (--vkey) and an HTTP client for --log; exit code 2 on a bad key."""
    try:
        verifier = _read_vkey(args.vkey)
    except (VerificationError, OSError) as e:
        print(f"error: --vkey: {e}", file=sys.stderr)
        return 2
    return verifier, HttpLog(args.log, timeout=args.timeout)


def _policy_line(ev: dict[str, Any]) -> str | None:
    if ev.get("event") == "policy":
        fork = " (its previous is not the latest policy: fork of the policy chain)" if ev.get("fork") else ""
        return (f"policy at entry {ev['index']}: {len(ev['issuer_keys'])} issuer keys, {ev['trust_anchors']} "
                f"trust anchors, algs {ev['allowed_algs']}, max {ev['max_statement_size']} bytes{fork}")
    if ev.get("event") == "policy-race":
        return f"warning: entry {ev['index']}: {ev['detail']}"
    return None


def _cmd_monitor(args: argparse.Namespace) -> int:
    rep = Reporter()
    opened = _open_log(args)
    if isinstance(opened, int):
        return opened
    verifier, log = opened
    try:
        keys = statement_keys_of(log, args.log_key) if args.log_key else None
        mon = Monitor(log, verifier, args.state, peers=args.peer, witnesses=args.witness,
                      max_unreachable=args.max_unreachable, reporter=rep, shards=args.shards,
                      statement_keys=keys)
    except (VerificationError, OSError) as e:  # --log-key unreadable
        print(f"error: --log-key: {e}", file=sys.stderr)
        return 2
    except MonitorAlert as a:
        rep.alert(a, verifier.name)
        return 1
    iterations = 1 if args.once else args.iterations
    i = 0
    try:
        while True:
            try:
                mon.poll()
            except MonitorAlert as a:
                rep.alert(a, verifier.name)
                return 1
            i += 1
            if iterations and i >= iterations:
                # --once is a health check: a log that did not answer is a failure (exit 3)
                return 3 if args.once and not mon.reachable else 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130


def _audit_one(args: argparse.Namespace, rep: Reporter, log: HttpLog, cp, note: str, *, state: str | None,
               keys: Any = None) -> tuple[Any, Any, float]:
    """Audit one log (one shard) against its checkpoint ``cp``; (audit state, statement checker, s)."""
    bar = {"auto": None, "bar": True, "lines": False}[args.progress]
    prog = Progress(cp.size, sys.stderr, bar=bar)
    aud = Auditor(log.fetch, state, workers=args.workers, progress=prog)
    checker = None
    if args.statements:
        anchors = []
        tracker = None
        if args.no_policy:
            if args.trust_anchors:
                from ..x509 import load_certificates

                anchors = load_certificates(Path(args.trust_anchors).read_bytes())
        else:
            from ..policy import PolicyTracker

            tracker = PolicyTracker(keys if keys is not None else statement_keys_of(log, args.log_key),
                                    origin=cp.origin, grace=args.policy_grace)
        checker = aud.check_entries = StatementChecker(
            log, anchors, policy=tracker,
            on_event=lambda ev: rep.event(ev | {"origin": cp.origin}, _policy_line(ev)))
    t0 = time.perf_counter()
    st = aud.audit(cp, note)
    return st, checker, time.perf_counter() - t0


def _audited(rep: Reporter, cp, st, checker, dt: float, **extra: Any) -> None:
    ev = {"event": "audited", "origin": cp.origin, "size": st.audited_size,
          "root": base64.b64encode(cp.root).decode(), "seconds": round(dt, 3), **extra}
    human = f"ok: {cp.origin} size {cp.size}: every tile, entry bundle and the root recomputed and equal"
    if checker is not None:
        ev["statements"] = checker.counts()
        human += (f"; {checker.checked} statements hash to their leaves"
                  + (f", each admissible under the registration policy in force ({checker.policies} policies, "
                     f"{checker.races} admitted in a policy-change race)" if checker.policy is not None else "")
                  + f"; {checker.signature_verified} issuer signatures verified, {checker.unverified} not checkable")
    if extra.get("successor"):
        human += f"; its final checkpoint is the one {extra['successor']} records at its index 0"
    rep.event(ev, human)


def _cmd_audit(args: argparse.Namespace) -> int:
    rep = Reporter()
    opened = _open_log(args)
    if isinstance(opened, int):
        return opened
    verifier, log = opened
    try:
        if args.checkpoint:
            note = Path(args.checkpoint).read_text(encoding="utf-8")
        else:
            note = log.checkpoint()
        cp = _verify_note(note, verifier, args.checkpoint or "the log").checkpoint
        st, checker, dt = _audit_one(args, rep, log, cp, note, state=args.state)
        _audited(rep, cp, st, checker, dt)
        if args.shards:
            # every predecessor: its statement at our index 0, its serving its final checkpoint,
            # and its whole tree audited against that final checkpoint (keys from the chain)
            keys = statement_keys_of(log, args.log_key)
            for link, prev in follow_chain(log, cp, keys):
                fcp = link.final.checkpoint
                pst, pchecker, pdt = _audit_one(args, rep, prev, fcp, link.final.raw, state=None,
                                                keys=link.receipt_keys)
                _audited(rep, fcp, pst, pchecker, pdt, successor=link.successor_origin)
    except MonitorAlert as a:
        rep.alert(a, verifier.name)
        return 1
    except (Unreachable, OSError) as e:
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: {e} (resume by re-running)")
        return 1
    except VerificationError as e:  # --log-key / the log's key set unusable
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: the log's keys: {e}")
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run to resume", file=sys.stderr)
        return 130
    return 0


def _cmd_shards(args: argparse.Namespace) -> int:
    """``twi-verify shards``: the verified chain of shards behind a log, and (``--out``) the
    receipt keys of every shard as one COSE_KeySet, for relying parties (``--log-key``)."""
    from ..keys import cose_key_from_public, encode_keyset
    from .state import write_atomic

    rep = Reporter()
    opened = _open_log(args)
    if isinstance(opened, int):
        return opened
    verifier, log = opened
    try:
        note = log.checkpoint()
        cp = _verify_note(note, verifier, "the log").checkpoint
        keys = statement_keys_of(log, args.log_key)
        chain = follow_chain(log, cp, keys)
    except MonitorAlert as a:
        rep.alert(a, verifier.name)
        return 1
    except (Unreachable, OSError) as e:
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: {e}")
        return 1
    except VerificationError as e:
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: the log's keys: {e}")
        return 2
    rep.event({"event": "shard", "origin": cp.origin, "url": log.url, "size": cp.size, "current": True},
              f"ok: {cp.origin} (current, size {cp.size})")
    all_keys = dict(keys)
    for link, _ in chain:
        rep.event({"event": "shard", **link.summary()},
                  f"ok: {link.origin} at {link.url}, closed at size {link.final.checkpoint.size}, "
                  f"recorded at index 0 of {link.successor_origin}")
        all_keys.update(link.receipt_keys)
    if args.out:
        write_atomic(args.out, encode_keyset([cose_key_from_public(k, kid=kid) for kid, k in sorted(all_keys.items())]))
    return 0


def add_parser(subparsers) -> None:
    """Register the ``monitor`` and ``audit`` subcommands (handlers return exit codes,
    stored as ``func`` on the namespace)."""
    m = subparsers.add_parser("monitor", help="follow a log's checkpoints and alert on misbehaviour")
    m.add_argument("--log", required=True, help="log URL prefix (serves /checkpoint and /tile/...)")
    m.add_argument("--vkey", required=True, help="the log's note verifier key (or @FILE)")
    m.add_argument("--state", required=True, help="state file (created if missing)")
    m.add_argument("--witness", action="append", default=[],
                   help="witness URL (twi-witness: GET <url>/checkpoint?origin=) to compare views with")
    m.add_argument("--peer", action="append", default=[], help="URL of a checkpoint seen elsewhere to compare with")
    m.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    m.add_argument("--once", action="store_true",
                   help="poll once and exit: 0 ok, 1 alert, 3 the log (checkpoint or tiles) did not answer")
    m.add_argument("--iterations", type=int, default=0, help="stop after N polls (0: forever)")
    m.add_argument("--max-unreachable", type=float, default=3600.0, help="alert when unreachable longer (s)")
    m.add_argument("--shards", action="store_true",
                   help="follow the chain of shards: the shard statement at index 0 and every predecessor serving "
                        "exactly the final checkpoint its successor recorded")
    m.add_argument("--log-key", help="with --shards: the log's statement-signing key(s) (default: GET "
                                     "<log>/.well-known/scitt-keys)")
    m.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout (s)")
    m.set_defaults(func=_cmd_monitor, handler=_cmd_monitor)

    a = subparsers.add_parser("audit", help="fetch every tile and entry and recompute the tree")
    a.add_argument("--log", required=True, help="log URL prefix")
    a.add_argument("--vkey", required=True, help="the log's note verifier key (or @FILE)")
    a.add_argument("--state", help="resume file (progress is kept here)")
    a.add_argument("--checkpoint", help="audit this signed checkpoint file instead of the log's current one")
    a.add_argument("--workers", type=int, default=8, help="parallel fetches")
    a.add_argument("--statements", action="store_true",
                   help="also fetch each statement, check d(i) = SHA-256(statement bytes) and judge it by the "
                        "registration policy in force when it was registered (the log's policy statements)")
    a.add_argument("--log-key", help="the log's statement-signing key(s) (PEM, COSE_Key or COSE_KeySet) that sign "
                                     "its policy statements (default: GET <log>/.well-known/scitt-keys)")
    a.add_argument("--policy-grace", type=float, default=60.0,
                   help="seconds after a policy change during which an entry the superseded policy admits is "
                        "accepted as a registration race (reported); 0: none")
    a.add_argument("--no-policy", action="store_true",
                   help="with --statements: do not evaluate the registration policy (only x5chain statements are "
                        "verified, against --trust-anchors)")
    a.add_argument("--trust-anchors", help="with --no-policy: PEM file: verify x5chain statements' signatures to these roots")
    a.add_argument("--shards", action="store_true",
                   help="also audit every predecessor shard against the final checkpoint its successor records "
                        "at index 0 (and check that it still serves exactly that checkpoint)")
    a.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto")
    a.add_argument("--timeout", type=float, default=30.0)
    a.set_defaults(func=_cmd_audit, handler=_cmd_audit)

    s = subparsers.add_parser("shards", help="verify the chain of shards behind a log; write every shard's keys")
    s.add_argument("--log", required=True, help="URL of the current shard")
    s.add_argument("--vkey", required=True, help="its note verifier key (or @FILE)")
    s.add_argument("--log-key", help="its statement-signing key(s) (default: GET <log>/.well-known/scitt-keys)")
    s.add_argument("--out", help="write the receipt keys of every shard (COSE_KeySet) here, for --log-key")
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(func=_cmd_shards, handler=_cmd_shards)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="twi-monitor")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)
