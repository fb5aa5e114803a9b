"""Following a log's chain of shards (``twi-verify monitor|audit --shards``, ``twi-verify shards``).

From a verified checkpoint of the current shard: entry 0 is read from the entry bundle and proved
in that checkpoint with an inclusion proof computed from the log's tiles; its statement is
fetched and must hash to it; if it is a shard statement (:mod:`verifier.shard`) it must verify
with the log's statement-signing keys, and it names the predecessor (URL, vkey, receipt keys,
final checkpoint). The predecessor's current checkpoint must be that final checkpoint (a log
that grew after it was closed, or serves another tree, is an alert), and the predecessor's own
entry 0 is followed the same way, with the keys its successor recorded.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import VerificationError
from ..merkle import leaf_hash, verify_inclusion
from ..note import Checkpoint
from ..shard import MAX_CHAIN, SHARD_CONTENT_TYPE, ShardLink, check_closed_log, first_entry_statement, open_shard_statement
from ..tiles import TILE_WIDTH, TileHashReader, TileNotFound, entries_path, parse_entry_bundle
from .alerts import MonitorAlert, Unreachable
from .httplog import HttpLog

ALERT = "shard-chain"


def first_leaf(log: HttpLog, cp: Checkpoint) -> bytes:
    """Leaf input 0 of ``log``, proved included in ``cp`` (from the entry bundle and tiles)."""
    w = min(cp.size, TILE_WIDTH)
    try:
        leaf0 = parse_entry_bundle(log.get(entries_path(0, None if w == TILE_WIDTH else w)), w)[0]
        proof = TileHashReader(log.fetch, cp.size).inclusion_proof(0)
        verify_inclusion(0, cp.size, leaf_hash(leaf0), proof, cp.root)
    except TileNotFound as e:
        raise MonitorAlert("tiles-missing", f"{cp.origin}: entry 0 or its proof is not served ({e})") from None
    except VerificationError as e:
        raise MonitorAlert(ALERT, f"{cp.origin}: entry 0 is not proved in the checkpoint of size {cp.size}: {e}",
                           {"origin": cp.origin}) from None
    return leaf0


def link_of(log: HttpLog, cp: Checkpoint, statement_keys: dict[bytes, Any]) -> ShardLink | None:
    """The verified shard statement at index 0 of ``log`` (whose checkpoint ``cp`` the caller
    verified), or None when its entry 0 is not one (the first shard)."""
    if cp.size == 0:
        return None
    leaf0 = first_leaf(log, cp)
    try:
        st = first_entry_statement(log.get, leaf0)
    except TileNotFound:
        raise MonitorAlert("tiles-missing", f"{cp.origin}: the statement of entry 0 is not served") from None
    except VerificationError as e:
        raise MonitorAlert(ALERT, f"{cp.origin}: entry 0: {e}", {"origin": cp.origin}) from None
    if st.content_type != SHARD_CONTENT_TYPE:
        return None
    try:
        return open_shard_statement(st, statement_keys, origin=cp.origin)
    except VerificationError as e:
        raise MonitorAlert(ALERT, f"{cp.origin}: entry 0 (shard statement): {e}",
                           {"origin": cp.origin, "entry_id": leaf0.hex()}) from None


def check_predecessor(link: ShardLink, log: HttpLog) -> None:
    """The closed predecessor must serve exactly the final checkpoint its successor recorded."""
    try:
        check_closed_log(link, log.checkpoint())
    except VerificationError as e:
        raise MonitorAlert(ALERT, f"{e}", {"predecessor": link.origin, "successor": link.successor_origin,
                                           "final_checkpoint": link.final.raw, "check": e.check}) from None


def follow_chain(
    log: HttpLog,
    cp: Checkpoint,
    statement_keys: dict[bytes, Any],
    *,
    open_log: Callable[[str], HttpLog] | None = None,
    cache: dict[str, ShardLink | None] | None = None,
) -> list[tuple[ShardLink, HttpLog]]:
    """Every predecessor of the shard ``log`` (checkpoint ``cp``, verified by the caller), newest
    first, each checked (statement, final checkpoint, the predecessor serving it). ``cache``
    (successor origin -> link): links already verified are not fetched again, only each
    predecessor's checkpoint. Raises MonitorAlert (``shard-chain``) or Unreachable."""
    open_log = open_log or (lambda url: HttpLog(url, timeout=log.timeout))
    out: list[tuple[ShardLink, HttpLog]] = []
    seen = {cp.origin}
    cur_log, cur_cp, keys = log, cp, statement_keys
    while len(out) < MAX_CHAIN:
        if cache is not None and cur_cp.origin in cache and cur_cp.size > 0:
            link = cache[cur_cp.origin]
        else:
            link = link_of(cur_log, cur_cp, keys)
            if cache is not None and cur_cp.size > 0:
                cache[cur_cp.origin] = link
        if link is None:
            return out
        if link.origin in seen:
            raise MonitorAlert(ALERT, f"the chain of shards loops back to {link.origin}", {"origin": link.origin})
        seen.add(link.origin)
        prev = open_log(link.url)
        check_predecessor(link, prev)
        out.append((link, prev))
        cur_log, cur_cp, keys = prev, link.final.checkpoint, link.receipt_keys
    raise MonitorAlert(ALERT, f"more than {MAX_CHAIN} shards", {})


def statement_keys_of(log: HttpLog, key_file: str | None) -> dict[bytes, Any]:
    """The log's statement-signing keys: ``--log-key FILE``, else ``GET /.well-known/scitt-keys``."""
    from ..keys import decode_keyset, load_public_keys, public_key_from_cose_key
    from ..policy import log_keys_from
    from .httplog import MAX_CHECKPOINT_BYTES

    if key_file:
        return log_keys_from(load_public_keys(key_file).values())
    try:
        data = log.get(".well-known/scitt-keys", MAX_CHECKPOINT_BYTES)
    except TileNotFound:
        raise Unreachable("the log serves no /.well-known/scitt-keys (give --log-key)") from None
    return log_keys_from(public_key_from_cose_key(k) for k in decode_keyset(data))
