"""``twi-verify``: check transparent statements, receipts, checkpoints and consistency.

Exit codes: 0 verified, 1 verification failed (including input that does not decode as
what it claims to be), 2 usage errors, unreadable files or unusable keys. No input makes
it print a traceback: everything unexpected is caught in :func:`main` and exits 2.

Other modules add subcommands through :data:`EXTENSIONS`: each is imported if present
and its ``add_parser(subparsers)`` registers parsers whose ``func`` handler returns the
exit code.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from . import cbor, cose, merkle
from .errors import VerificationError
from .keys import load_public_keys
from .receipt import Receipt, verify_consistency_receipt, verify_inclusion_receipt
from .transparent import ReceiptResult, check_transparent_statement

EXTENSIONS = ["verifier.monitor", "verifier.credential"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments, unreadable files, unusable keys: exit 2."""


# --- helpers ----------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _log_keys(paths: Sequence[str]) -> dict:
    keys: dict = {}
    for p in paths:
        try:
            keys.update(load_public_keys(p))
        except VerificationError as exc:
            raise UsageError(f"log key {p}: {exc.detail or exc.check}") from None
    return keys


def _issuer_keys(paths: Sequence[str]) -> list:
    out: list = []
    for p in paths:
        try:
            out.extend(load_public_keys(p).values())
        except VerificationError as exc:
            raise UsageError(f"issuer key {p}: {exc.detail or exc.check}") from None
    return out


def _anchors(paths: Sequence[str]) -> list:
    from .x509 import load_certificates

    out: list = []
    for p in paths:
        try:
            out.extend(load_certificates(_read(p)))
        except VerificationError as exc:
            raise UsageError(f"trust anchor {p}: {exc.detail}") from None
    return out


def _statement_leaf(path: str) -> bytes:
    """Leaf input of a statement file (signed or transparent statement)."""
    import hashlib

    msg = cose.decode_sign1(_read(path))
    return hashlib.sha256(msg.statement_bytes()).digest()


def _emit(args: argparse.Namespace, lines: list[str], doc: dict) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for line in lines:
            print(line)


def _describe_receipt(prefix: str, r: ReceiptResult) -> str:
    kid = f" kid={r.kid.hex()[:16]}" if r.kid else ""
    iss = f" issuer={r.issuer}" if r.issuer else ""
    if r.status == "ok" and r.info is not None:
        i = r.info
        alg = cose.ALG_NAMES.get(i.alg, str(i.alg))
        return (
            f"{prefix}: OK  vds=1 (RFC9162_SHA256){kid}{iss}: leaf {i.index} of tree size {i.size}, "
            f"root {i.root.hex()} recomputed from the inclusion path, {alg} signature verified"
        )
    if r.status == "unsupported":
        return f"{prefix}: UNSUPPORTED vds={cbor.brief(r.vds)}{kid}{iss}: not checked ({r.check})"
    return f"{prefix}: FAILED{kid}{iss}: {r.check}: {r.detail}"


# --- transparent-statement ----------------------------------------------------------------


def cmd_transparent_statement(args: argparse.Namespace) -> int:
    """Verify the receipts of a transparent statement against trusted log keys."""
    log_keys = _log_keys(args.log_key)
    issuer = _issuer_keys(args.issuer_key) if args.issuer_key else None
    anchors = _anchors(args.ca) if args.ca else None
    payload = _read(args.payload) if args.payload else None
    data = _read(args.file)
    try:
        report = check_transparent_statement(
            data, log_keys, issuer_key=issuer, trust_anchors=anchors, payload=payload
        )
    except VerificationError as exc:
        _emit(args, [f"statement: FAILED {exc}"], {"ok": False, "error": {"check": exc.check, "detail": exc.detail}})
        return EXIT_FAIL
    lines = [f"statement: leaf input {report.leaf_input.hex()} (SHA-256 of the statement with unprotected a0)"]
    doc: dict[str, Any] = {"leaf_input": report.leaf_input.hex(), "receipts": [r.to_json() for r in report.receipts]}
    if report.issuer_checked:
        how = "issuer key" if issuer is not None else "x5chain to trust anchors"
        if report.issuer_error is None:
            lines.append(f"issuer: OK  signature verified with the {how}")
            doc["issuer"] = {"status": "ok"}
        else:
            e = report.issuer_error
            lines.append(f"issuer: FAILED ({how}) {e.check}: {e.detail}")
            doc["issuer"] = {"status": "failed", "check": e.check, "detail": e.detail}
    for r in report.receipts:
        lines.append(_describe_receipt(f"receipt {r.index}", r))
    ok = report.ok
    if not any(r.ok for r in report.receipts):
        lines.append("result: FAILED no receipt from a trusted log verified")
    elif not ok:
        lines.append("result: FAILED the issuer signature did not verify")
    else:
        lines.append("result: OK")
    doc["ok"] = ok
    _emit(args, lines, doc)
    return EXIT_OK if ok else EXIT_FAIL


# --- receipt ------------------------------------------------------------------------------


def cmd_receipt(args: argparse.Namespace) -> int:
    """Verify one inclusion receipt for a statement file."""
    log_keys = _log_keys(args.log_key)
    receipt = _read(args.receipt)
    stmt = _read(args.statement)
    try:
        import hashlib

        leaf = hashlib.sha256(cose.decode_sign1(stmt).statement_bytes()).digest()
        r = Receipt.parse(receipt)
        res = ReceiptResult(0, "failed", vds=r.vds, kid=r.kid, issuer=r.issuer)
        if r.vds != 1:
            res.status, res.check, res.detail = "unsupported", "receipt.unsupported-vds", f"vds {cbor.brief(r.vds)}"
        else:
            res.info = verify_inclusion_receipt(r, leaf, log_keys)
            res.status = "ok"
    except VerificationError as exc:
        res = ReceiptResult(0, "failed", exc.check, exc.detail)
    _emit(args, [_describe_receipt("receipt", res)], {"ok": res.ok, "receipt": res.to_json()})
    return EXIT_OK if res.ok else EXIT_FAIL


# --- checkpoint ---------------------------------------------------------------------------


def _vkeys(values: Sequence[str]) -> list:
    from .note import NoteVerifier

    out = []
    for v in values:
        text = v
        if v.startswith("@") or ("+" not in v and Path(v).is_file()):
            text = _read(v.lstrip("@")).decode("utf-8", "replace")
        for line in text.split():
            try:
                out.append(NoteVerifier.from_vkey(line.strip()))
            except VerificationError as exc:
                raise UsageError(f"bad verifier key {line.strip()!r}: {exc.detail or exc.check}") from None
    if not out:
        raise UsageError("no verifier key given")
    return out


def _open_checkpoint(path: str, vkeys: Sequence[str]) -> Any:
    from .note import Checkpoint, open_note

    note = open_note(_read(path), _vkeys(vkeys))
    return Checkpoint.parse(note.text), note


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Verify a C2SP checkpoint's signature with the given verifier key(s)."""
    vk = _vkeys(args.vkey)  # usage errors first
    del vk
    try:
        cp, note = _open_checkpoint(args.file, args.vkey)
    except VerificationError as exc:
        _emit(args, [f"checkpoint: FAILED {exc}"], {"ok": False, "error": {"check": exc.check, "detail": exc.detail}})
        return EXIT_FAIL
    signers = sorted({s.name for s in note.verified})
    line = (
        f"checkpoint: OK  origin={cp.origin} size={cp.size} root={cp.root.hex()} "
        f"signed by {', '.join(signers)}"
    )
    doc = {"ok": True, "origin": cp.origin, "size": cp.size, "root": cp.root.hex(),
           "extensions": list(cp.extensions), "verified_by": signers}
    _emit(args, [line], doc)
    return EXIT_OK


# --- consistency --------------------------------------------------------------------------


class _Heads:
    """Verified tree heads by size, and which sizes are proven consistent (union-find).

    A checkpoint signs its size; a receipt signs only its root (RFC 9942), so the size a
    receipt claims is checked, never trusted: one root at two sizes means a receipt's size is
    false (``receipt.tree-size``), and two roots at one size (``consistency.conflict``) are a
    fork or a receipt whose size was altered: with one signed checkpoint no one can tell which
    (the monitor, comparing signed checkpoints, names forks)."""

    def __init__(self) -> None:
        self.roots: dict[int, bytes] = {}
        self.parent: dict[int, int] = {}
        self.source: dict[int, str] = {}

    def add(self, size: int, root: bytes, source: str) -> None:
        for s, r in self.roots.items():
            if r == root and s != size:
                raise VerificationError(
                    "receipt.tree-size", f"{self.source[s]} and {source} have the same root at tree sizes {s} and "
                    f"{size}: a receipt's tree size is not signed (RFC 9942), and one of them is false")
        old = self.roots.get(size)
        if old is not None and old != root:
            raise VerificationError(
                "consistency.conflict", f"{self.source[size]} and {source} have different roots for tree size "
                f"{size}: a fork, or a receipt whose unsigned tree size was altered; compare with the log's "
                "signed checkpoint of that size")
        self.roots[size] = root
        self.parent.setdefault(size, size)
        self.source.setdefault(size, source)

    def _find(self, s: int) -> int:
        while self.parent[s] != s:
            s = self.parent[s]
        return s

    def link(self, a: int, b: int) -> None:
        self.parent[self._find(a)] = self._find(b)

    def all_linked(self) -> bool:
        return len({self._find(s) for s in self.roots}) <= 1


def _read_proof_lines(path: str) -> list[bytes]:
    out = []
    for line in _read(path).decode("ascii", "replace").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(base64.b64decode(line, validate=True))
            except ValueError:
                raise UsageError(f"{path}: not a base64 hash per line") from None
    return out


def cmd_consistency(args: argparse.Namespace) -> int:
    """Check that receipts, a consistency receipt and/or a checkpoint describe one log."""
    if len(args.receipt) != len(args.statement):
        raise UsageError("give one --statement per --receipt (paired in order)")
    if bool(args.checkpoint) != bool(args.vkey):
        raise UsageError("--checkpoint needs --vkey (and vice versa)")
    n_heads = len(args.receipt) + (1 if args.checkpoint else 0)
    if n_heads < 1 or (n_heads < 2 and not args.consistency_receipt):
        raise UsageError("need two tree heads (receipts/checkpoint), or one plus --consistency-receipt")
    if (args.receipt or args.consistency_receipt) and not args.log_key:
        raise UsageError("receipts need --log-key")
    log_keys = _log_keys(args.log_key) if args.log_key else {}
    if args.vkey:
        _vkeys(args.vkey)
    proof_path = _read_proof_lines(args.proof) if args.proof else None
    lines: list[str] = []
    heads = _Heads()
    try:
        for rp, sp in zip(args.receipt, args.statement):
            info = verify_inclusion_receipt(_read(rp), _statement_leaf(sp), log_keys)
            heads.add(info.size, info.root, rp)
            lines.append(f"receipt {rp}: OK  tree size {info.size} root {info.root.hex()}")
        if args.checkpoint:
            cp, _ = _open_checkpoint(args.checkpoint, args.vkey)
            heads.add(cp.size, cp.root, args.checkpoint)
            lines.append(f"checkpoint {args.checkpoint}: OK  origin={cp.origin} size {cp.size} root {cp.root.hex()}")
        for cr in args.consistency_receipt:
            r = Receipt.parse(_read(cr))
            r.require_vds1()
            s1 = r.proofs(-2)[0][0]
            if s1 not in heads.roots:
                raise VerificationError("consistency.no-head", f"{cr} starts at size {s1}: no verified head of that size")
            ci = verify_consistency_receipt(r, size1=s1, root1=heads.roots[s1], keys=log_keys)
            heads.add(ci.size2, ci.root2, cr)
            heads.link(ci.size1, ci.size2)
            lines.append(f"consistency receipt {cr}: OK  size {ci.size1} -> {ci.size2}, root {ci.root2.hex()}")
        if proof_path is not None:
            sizes = sorted(heads.roots)
            if len(sizes) != 2:
                raise UsageError("--proof needs exactly two distinct tree sizes")
            try:
                merkle.verify_consistency(sizes[0], sizes[1], proof_path, heads.roots[sizes[0]], heads.roots[sizes[1]])
            except VerificationError as exc:
                raise VerificationError("consistency.proof", exc.detail or exc.check) from None
            heads.link(sizes[0], sizes[1])
            lines.append(f"consistency proof {args.proof}: OK  size {sizes[0]} -> {sizes[1]}")
        if not heads.all_linked():
            raise VerificationError(
                "consistency.unproven", "tree heads of different sizes without a consistency proof linking them"
            )
    except VerificationError as exc:
        lines.append(f"result: FAILED {exc.check}: {exc.detail}")
        _emit(args, lines, {"ok": False, "check": exc.check, "detail": exc.detail, "steps": lines[:-1]})
        return EXIT_FAIL
    lines.append(f"result: OK  tree heads {sorted(heads.roots)} are consistent")
    _emit(args, lines, {"ok": True, "heads": {str(s): r.hex() for s, r in sorted(heads.roots.items())}})
    return EXIT_OK


# --- parser and main ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with the built-in and extension subcommands."""
    p = _Parser(prog="twi-verify", description="Verify TWI transparency log artefacts.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("transparent-statement", help="verify a transparent statement's receipts")
    t.add_argument("file", help="transparent statement (COSE_Sign1 with receipts in 394)")
    t.add_argument("--log-key", action="append", required=True, metavar="KEY",
                   help="trusted log key: PEM public key/cert, COSE_Key or COSE_KeySet (repeatable)")
    t.add_argument("--issuer-key", action="append", default=[], metavar="KEY", help="issuer public key to check too")
    t.add_argument("--ca", action="append", default=[], metavar="CERT", help="trust anchor for an x5chain issuer")
    t.add_argument("--payload", metavar="FILE", help="detached payload for the issuer signature check")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_transparent_statement)

    r = sub.add_parser("receipt", help="verify an inclusion receipt for a statement")
    r.add_argument("receipt", help="receipt file (tagged COSE_Sign1)")
    r.add_argument("statement", help="the signed (or transparent) statement it is for")
    r.add_argument("--log-key", action="append", required=True, metavar="KEY")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_receipt)

    c = sub.add_parser("checkpoint", help="verify a C2SP checkpoint (signed note)")
    c.add_argument("file")
    c.add_argument("--vkey", action="append", required=True, metavar="VKEY",
                   help="note verifier key string, or @FILE / a file of them (repeatable)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_checkpoint)

    k = sub.add_parser(
        "consistency",
        help="check receipts / a checkpoint are consistent",
        description="Verified tree heads come from inclusion receipts (--receipt with its --statement) "
        "and a checkpoint (--checkpoint with --vkey); they must agree where sizes are equal and be "
        "linked by a consistency receipt (--consistency-receipt) or a C2SP proof (--proof, base64 lines).",
    )
    k.add_argument("--receipt", action="append", default=[], metavar="FILE")
    k.add_argument("--statement", action="append", default=[], metavar="FILE")
    k.add_argument("--consistency-receipt", action="append", default=[], metavar="FILE")
    k.add_argument("--checkpoint", metavar="FILE")
    k.add_argument("--vkey", action="append", default=[], metavar="VKEY")
    k.add_argument("--proof", metavar="FILE", help="consistency proof, one base64 hash per line")
    k.add_argument("--log-key", action="append", default=[], metavar="KEY")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_consistency)

    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``twi-verify`` console script; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(func(args))
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    except UsageError as exc:
        print(f"twi-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerificationError as exc:
        print(f"twi-verify: FAILED {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - the CLI must never print a traceback
        print(f"twi-verify: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
