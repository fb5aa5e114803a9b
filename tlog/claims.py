"""One claim, one entry: the rules the integration commit applies to a batch (issue 11).

Both run inside the transaction that assigns entries (tlog.log.Log._integrate), so they hold
whatever the checks before the queue saw and however the submissions were batched:

- :func:`unique_conflicts`: an attribute listed in ``Log.unique_attrs`` (the personality's
  unique attributes, tlog.personality: TWI's (issuer, record id) key) may be held by one claim
  only (one dedup key); a later item with the same value under another claim is refused
  (:class:`Refused`, nothing stored);
- :func:`alias_rows`: a queued submission (it may have been answered 303 with its own entry id)
  that the batch deduplicated onto an entry with another leaf - a re-encoding of a claim that
  was still pending - is recorded as an alias of that entry, so its entry id resolves.
"""

from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["Refused", "unique_conflicts", "alias_rows"]


class Refused(Exception):
    """A submission the integration refused: another entry (earlier, or earlier in the same
    batch) holds the value of one of its unique attributes under another dedup key. Nothing
    is stored for it; its waiter gets this error."""

    def __init__(self, key: str, value: str) -> None:
        super().__init__(key, value)  # (picklable: crosses the integrator process's pipe)
        self.key, self.value = key, value

    def __str__(self) -> str:
        return f"another entry holds {self.key} {self.value[:200]!r}"


def unique_conflicts(tx, items: Sequence[tuple], unique: frozenset[str]) -> dict[int, Refused]:
    """Positions in ``items`` ((leaf, data, attrs, dedup key), in batch order) to refuse: an item
    whose unique attribute value an entry already holds, or an earlier item of the batch holds,
    under another dedup key (its own claim again is a duplicate, not a conflict). A queue row
    whose data is None (PostgreSQL keeps its data and attributes in the database) has its
    unique attributes read with ``tx.queued_attrs``."""
    held_back = [it[0] for it in items if it[1] is None]
    queued = tx.queued_attrs(held_back, unique) if held_back else {}
    cand = [(pos, it[3], k, v) for pos, it in enumerate(items)
            for k, v in (it[2] if it[1] is not None else queued.get(it[0], ())) if k in unique]
    if not cand:
        return {}
    held = tx.attrs_held({(k, v) for _, _, k, v in cand})
    known = tx.existing(list({c[1] for c in cand}))
    first: dict[tuple[str, str], bytes] = {}
    refused: dict[int, Refused] = {}
    for pos, dkey, k, v in cand:
        if dkey in known or pos in refused:
            continue
        if (k, v) in held or first.setdefault((k, v), dkey) != dkey:
            refused[pos] = Refused(k, v)
    return refused


def alias_rows(rows: Sequence[tuple], results: Sequence, size: int, new_leaves: Sequence[bytes],
               stored_leaf: Callable[[int], bytes | None]) -> list[tuple[bytes, int]]:
    """(leaf, index) for the queued ``rows`` whose result (index, duplicate) is a duplicate of an
    entry with another leaf (``new_leaves`` of this batch start at ``size``; ``stored_leaf``
    reads an earlier entry's leaf)."""
    out = []
    for it, r in zip(rows, results):
        if isinstance(r, Refused) or not r[1]:
            continue
        idx = r[0]
        leaf = new_leaves[idx - size] if idx >= size else stored_leaf(idx)
        if leaf != it[0]:
            out.append((it[0], idx))
    return out
