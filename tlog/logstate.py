"""Log-wide state kept in the log's storage: the identity a start must match.

The ``meta`` table of the log's storage (SQLite file or PostgreSQL database, the one every
worker and host shares) holds, from the log's first start on::

    origin           the checkpoint origin (written by the core, tlog.log)
    issuer           the receipts' issuer (CWT iss), fixed at creation
    checkpoint_vkey  the checkpoint verifier key: <origin>+<keyid>+<base64>
    receipt_keys     JSON {"active": <kid hex>, "keys": {<kid hex>: <SPKI PEM>}}: every receipt
                     key the log has used; /.well-known/scitt-keys lists them all

Keys are made only for a log whose storage holds no log yet (``tlog init`` or the first start).
Every later start loads the key files and compares them with the stored identity; a missing,
unreadable or different key is refused with one line naming the file and what to restore,
before anything is written. A key rotation (``tlog rotate-key``) is the only change of the
receipt key set, and it is recorded here, where every worker and host sees it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from . import hsm
from .keys import (
    NEXT_RECEIPT_KEY,
    NOTE_SKEY,
    RECEIPT_KEY,
    RESTORE,
    KeyError_,
    LogKeys,
    create_keys,
    existing_origin,
    finish_rotation,
    fsync_dir,
    load_keys,
    load_receipt_key,
    prepare_rotation,
    public_pem,
    sync_vkey,
)

log = logging.getLogger("tlog.logstate")

META_ORIGIN = "origin"
META_ISSUER = "issuer"
META_VKEY = "checkpoint_vkey"
META_KEYS = "receipt_keys"
META_CLOSED = "shard_closed"  # tlog.shard: the log is closed to registrations


class StartupError(Exception):
    """The log cannot start (or a command cannot run) as configured: one line for the operator."""


@dataclass
class KeySet:
    """The receipt key set recorded in storage: the active kid and every public key."""

    active: bytes
    keys: dict[bytes, Any]  # kid -> public key

    def to_json(self) -> str:
        return json.dumps(
            {"active": self.active.hex(), "keys": {k.hex(): public_pem(v).decode() for k, v in sorted(self.keys.items())}},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, s: str) -> "KeySet":
        d = json.loads(s)
        keys = {bytes.fromhex(k): serialization.load_pem_public_key(v.encode()) for k, v in d["keys"].items()}
        return cls(bytes.fromhex(d["active"]), keys)


def read_meta(storage, key: str) -> str | None:
    return storage.meta(key)


def log_exists(storage) -> bool:
    """True once the storage holds a log (created by ``tlog init`` or a first start)."""
    return storage.state() is not None or storage.meta(META_ORIGIN) is not None


def stored_keyset(storage) -> KeySet | None:
    s = storage.meta(META_KEYS)
    return None if s is None else KeySet.from_json(s)


@dataclass
class Identity:
    keys: LogKeys
    issuer: str
    created: bool = False


def _create(storage, config) -> Identity:
    origin = config.origin or existing_origin(config.data_dir) or config.effective_origin()
    issuer = config.issuer or config.effective_issuer()
    if hsm.enabled(config):
        keys = hsm.create_keys(config, origin)
    else:
        keys = create_keys(config.data_dir, origin)
    ks = KeySet(keys.receipt.kid, {keys.receipt.kid: keys.receipt.private.public_key()})
    with storage.integration() as tx:
        if tx.get_meta(META_ORIGIN) is None and tx.state() is None:
            tx.set_meta(META_ORIGIN, origin)
            tx.set_meta(META_ISSUER, issuer)
            tx.set_meta(META_VKEY, keys.vkey)
            tx.set_meta(META_KEYS, ks.to_json())
            created = True
        else:
            created = False  # another process created the log meanwhile: check against it
    if not created:
        return _check(storage, config)
    if config.database_url is None:
        fsync_dir(config.data_path)  # the new database file's name, durable with the log's first rows
    log.info("created the log %s (issuer %s, receipt kid %s)", origin, issuer, keys.receipt.kid.hex())
    return Identity(keys, issuer, created=True)


def _check(storage, config) -> Identity:
    """Load the key files of an existing log and compare them with its stored identity."""
    kdir = Path(config.data_dir) / "keys"
    origin = storage.meta(META_ORIGIN)
    if origin is None:  # state without meta: a log from before the meta rows; trust the files
        keys = load_keys(config.data_dir)
        origin = keys.origin
    if config.origin and config.origin != origin:
        raise StartupError(
            f"the log's origin is {origin!r} (fixed when it was created); "
            f"the configured origin {config.origin!r} differs: remove the origin setting or set it to {origin!r}"
        )
    issuer = storage.meta(META_ISSUER)
    if issuer is not None and config.issuer and config.issuer != issuer:
        raise StartupError(
            f"the log's issuer is {issuer!r} (fixed when it was created); "
            f"the configured issuer {config.issuer!r} differs: remove the issuer setting or set it to {issuer!r}"
        )
    ks = stored_keyset(storage)
    if hsm.enabled(config):
        keys = hsm.load_keys(config, origin, ks.active if ks is not None else None)
    else:
        if ks is not None:
            _finish_interrupted_rotation(kdir, ks)
        keys = load_keys(config.data_dir)  # KeyError_ names a missing or unreadable file
    vkey = storage.meta(META_VKEY)
    if vkey is not None and keys.vkey != vkey:
        raise KeyError_(
            f"{kdir / NOTE_SKEY} is not this log's checkpoint key ({keys.vkey.split('+')[1]}; the log's is "
            f"{vkey}): {RESTORE}"
        )
    if keys.origin != origin:
        raise KeyError_(f"{kdir / NOTE_SKEY} signs for origin {keys.origin!r}, the log is {origin!r}: {RESTORE}")
    if ks is not None:
        kid = keys.receipt.kid
        if kid != ks.active:
            if kid in ks.keys:
                raise KeyError_(
                    f"{kdir / RECEIPT_KEY} holds the retired receipt key {kid.hex()}; the active one is "
                    f"{ks.active.hex()}: copy keys/{RECEIPT_KEY} from the host where 'tlog rotate-key' ran"
                )
            raise KeyError_(
                f"{kdir / RECEIPT_KEY} (kid {kid.hex()}) is not a receipt key of this log (active "
                f"{ks.active.hex()}): {RESTORE}"
            )
        keys.retired = {k: v for k, v in ks.keys.items() if k != ks.active}
    upgrade = {}
    if issuer is None:
        issuer = config.issuer or config.effective_issuer()
        upgrade[META_ISSUER] = issuer
    if vkey is None:
        upgrade[META_VKEY] = keys.vkey
    if ks is None:
        allk = dict(keys.retired)
        allk[keys.receipt.kid] = keys.receipt.private.public_key()
        upgrade[META_KEYS] = KeySet(keys.receipt.kid, allk).to_json()
    sync_vkey(config.data_dir, keys)
    if upgrade:  # a log created before these rows existed: record what it runs with now
        with storage.integration() as tx:
            for k, v in upgrade.items():
                if tx.get_meta(k) is None:
                    tx.set_meta(k, v)
    return Identity(keys, issuer)


def _finish_interrupted_rotation(kdir: Path, ks: KeySet) -> None:
    """A rotation recorded in storage whose new key was not installed yet (crash between the
    two steps of ``tlog rotate-key``): install it now."""
    npath = kdir / NEXT_RECEIPT_KEY
    if npath.exists():
        try:
            nxt = load_receipt_key(npath)
        except KeyError_:
            return
        if nxt.kid == ks.active:
            finish_rotation(kdir.parent)


def open_identity(storage, config, *, create: bool = True) -> Identity:
    """The log's keys and issuer, checked against its storage; created (keys and stored
    identity) only when ``create`` and the storage holds no log yet."""
    if not log_exists(storage):
        if not create:
            raise StartupError(f"no log in {config.storage_url()}: run 'tlog init' first")
        return _create(storage, config)
    return _check(storage, config)


def rotate(storage, config) -> tuple[bytes, bytes]:
    """``tlog rotate-key``: a new receipt key, recorded in storage as the active one, then
    installed. Order: new key durable (receipt.pem.next), key set in storage, old public key
    durable in retired/, new key renamed in. Returns (old kid, new kid)."""
    ident = open_identity(storage, config, create=False)
    data_dir = config.data_dir
    if hsm.enabled(config):
        active, nxt = ident.keys.receipt, hsm.new_receipt_key(config)
    else:
        active, nxt = prepare_rotation(data_dir)
    with storage.integration() as tx:
        cur = KeySet.from_json(tx.get_meta(META_KEYS))
        if cur.active != active.kid:
            raise StartupError(f"the log's active receipt key changed meanwhile ({cur.active.hex()})")
        cur.keys[nxt.kid] = nxt.private.public_key()
        cur.active = nxt.kid
        tx.set_meta(META_KEYS, cur.to_json())
    if not hsm.enabled(config):
        finish_rotation(data_dir)
    return active.kid, nxt.kid


# ---- the registration policy and the receipt key set, as every worker sees them ---------------

# config setting -> field of the policy document
POLICY_SETTINGS = {
    "issuer_keys": "issuer-keys",
    "trust_anchors": "trust-anchors",
    "allowed_algs": "allowed-algs",
    "allowed_content_types": "allowed-content-types",
    "max_statement_size": "max-statement-size",
}
REFRESH = 1.0  # seconds between a worker's reads of the log-wide state


def configured_policy(config, base=None):
    """The policy the settings describe; with ``base``, only the settings given replace its fields."""
    from .keys import TrustStore
    from .policy import Policy

    trust = TrustStore.load(config.issuer_keys, config.trust_anchors)
    mine = Policy(trust=trust, allowed_algs=list(config.allowed_algs),
                  allowed_content_types=list(config.allowed_content_types),
                  max_statement_size=config.max_statement_size, max_depth=config.max_depth)
    if base is None:
        return mine
    out = Policy(trust=TrustStore(issuer_keys=dict(base.trust.issuer_keys), anchors=list(base.trust.anchors),
                                  key_identities=dict(base.trust.key_identities),
                                  anchor_identities=dict(base.trust.anchor_identities)),
                 allowed_algs=list(base.allowed_algs), allowed_content_types=list(base.allowed_content_types),
                 max_statement_size=base.max_statement_size, max_depth=config.max_depth)
    if config.given("issuer_keys"):
        out.trust.issuer_keys = dict(trust.issuer_keys)
        out.trust.key_identities = dict(trust.key_identities)
    if config.given("trust_anchors"):
        out.trust.anchors = list(trust.anchors)
        out.trust.anchor_identities = dict(trust.anchor_identities)
    for name in ("allowed_algs", "allowed_content_types", "max_statement_size"):
        if config.given(name):
            setattr(out, name, getattr(mine, name))
    return out


def policy_differences(in_force, config) -> list[str]:
    """How the settings given (not defaults) differ from the policy in force, for people."""
    mine = configured_policy(config).summary()
    theirs = in_force.summary()
    out = []
    for name, field in POLICY_SETTINGS.items():
        if not config.given(name) or mine[field] == theirs[field]:
            continue
        a, b = mine[field], theirs[field]
        if isinstance(a, list):
            extra = [str(x)[:16] for x in a if x not in b]
            missing = [str(x)[:16] for x in b if x not in a]
            out.append(f"{field}: the options add [{', '.join(extra)}] and drop [{', '.join(missing)}]")
        else:
            out.append(f"{field}: the options say {a}, the policy {b}")
    return out


def latest_policy(storage, max_depth: int = 16):
    """(index, entry id, Policy) of the registration policy in force (the latest policy entry)."""
    from verifier import cbor as vcbor
    from verifier.statement import SignedStatement

    from .policy import Policy

    idx = storage.lookup("kind", "policy")
    if not idx:
        return None
    i = max(idx)
    data = storage.entry_data(i)
    st = SignedStatement.parse(data, max_size=max(len(data), 1), max_depth=16)
    doc = vcbor.loads(st.payload, max_depth=16, max_size=len(st.payload))
    return i, st.leaf_input.hex(), Policy.from_document(doc, max_depth=max_depth)


def check_policy_agrees(cur, config) -> None:
    """A server whose policy options disagree with the policy in force ``cur`` (index, entry id,
    Policy; None before the first) refuses to start, naming the difference."""
    if cur is None:
        return
    diffs = policy_differences(cur[2], config)
    if diffs:
        raise StartupError(
            f"the options disagree with the registration policy in force (entry {cur[1][:16]}, index {cur[0]}): "
            + "; ".join(diffs) + ". Change the policy with 'tlog policy set', or drop these options"
        )
    # every trusted key must be bound to the identities it may claim (issue 11 item 4); a policy
    # registered before that rule (version 1, or keys without identities) is replaced first
    policy = cur[2]
    unbound = sorted(k for k in policy.trust.issuer_keys
                     if policy.version < 2 or not policy.trust.key_identities.get(k))
    if unbound:
        raise StartupError(
            f"the registration policy in force (entry {cur[1][:16]}, index {cur[0]}) trusts issuer key "
            f"{unbound[0].hex()[:16]} without the issuer identities it may claim: run 'tlog policy set "
            "--issuer-key {\"path\": ..., \"iss\": [...]}' for each trusted key")


class LiveState:
    """The log-wide policy and receipt key set as this process sees them: re-read from storage
    every ``interval`` seconds by a background thread (:meth:`start`), so a ``tlog policy set`` or
    ``tlog rotate-key`` on any host reaches every worker of every host without a restart. The
    accessors do no I/O: a slow or paused database delays the next refresh, never a
    registration or a head signature."""

    def __init__(self, storage, config, keys: LogKeys, *, interval: float = REFRESH) -> None:
        self._storage = storage
        self._config = config
        self._data_dir = Path(config.data_dir)
        self._keys = keys
        self._keys_json = storage.meta(META_KEYS)
        self._policy = None  # (index, entry id, Policy)
        self.closed: dict | None = None  # the shard_closed record (tlog.shard), once the log is closed
        self._max_depth = config.max_depth
        self.interval = interval
        self._lock = threading.Lock()
        self._warned: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def keys(self) -> LogKeys:
        return self._keys

    @property
    def policy(self):
        """(index, entry id, Policy) in force, or None before the first policy."""
        return self._policy

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tlog-logstate", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self, force: bool = True) -> None:
        """Read the key set and the latest policy from storage now (errors keep the last state);
        ``force`` is accepted for callers of the earlier throttled form: every call reads."""
        with self._lock:
            try:
                self._refresh_keys()
                s = self._storage.meta(META_CLOSED)  # once set, never unset (a successor may be added)
                if s is not None:
                    self.closed = json.loads(s)
                cur = self._policy
                idx = self._storage.lookup("kind", "policy")
                if idx and (cur is None or max(idx) != cur[0]):
                    self._policy = latest_policy(self._storage, self._max_depth)
                    log.info("registration policy %s in force (index %d)", self._policy[1], self._policy[0])
            except Exception as e:  # noqa: BLE001 - keep the last known state; the next round retries
                log.warning("reading the log-wide state: %s", e)

    def _refresh_keys(self) -> None:
        s = self._storage.meta(META_KEYS)
        if s is None or s == self._keys_json:
            return
        ks = KeySet.from_json(s)
        receipt = self._keys.receipt
        if ks.active != receipt.kid:
            try:
                if hsm.enabled(self._config):
                    cand = hsm.receipt_key(self._config, ks.active)
                else:
                    cand = load_receipt_key(self._data_dir / "keys" / RECEIPT_KEY)
            except KeyError_:
                cand = None
            if cand is not None and cand.kid == ks.active:
                receipt = cand
                log.info("receipt key %s is active", receipt.kid.hex())
            elif self._warned != ks.active:
                self._warned = ks.active
                log.warning("the log's active receipt key is %s but keys/%s here holds %s: still signing with it "
                            "(it stays published) until the new key is copied here", ks.active.hex(), RECEIPT_KEY,
                            receipt.kid.hex())
        keys = self._keys
        self._keys = LogKeys(receipt=receipt, retired={k: v for k, v in ks.keys.items() if k != receipt.kid},
                             note_signer=keys.note_signer, origin=keys.origin)
        if receipt.kid == ks.active:
            self._keys_json = s
