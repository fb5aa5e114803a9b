"""Strict, bounded CBOR helpers for the verifier (RFC 8949).

Decoding is done in two steps so that hostile input can never exhaust the stack or
produce surprising objects:

1. :func:`scan` walks one data item *without building it*: it checks well-formedness,
   definite lengths, the nesting depth, lengths against the remaining bytes, reserved
   additional-information values and a small deny-list of tags (value sharing and string
   references, which can build cyclic or aliased structures). It is iterative, so deep
   nesting raises :class:`VerificationError`, never ``RecursionError``.
2. Only a span that passed :func:`scan` is handed to cbor2's C decoder (:func:`loads`),
   and the result is normalised (tuples -> lists, frozendicts -> dicts).

The scanner also reports raw byte spans (:func:`array_spans`, :func:`map_spans`), which
lets COSE code keep received bytes verbatim instead of re-encoding them.

Encoding (:func:`dumps`) is RFC 8949 section 4.2.1 core deterministic encoding: shortest
heads, definite lengths, map keys sorted by the bytewise order of their encodings.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import VerificationError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "scan",
    "head",
    "loads",
    "loads_span",
    "decode_item",
    "dumps",
    "encode_head",
    "encode_bstr",
    "array_spans",
    "map_spans",
    "normalize",
]

DEFAULT_MAX_SIZE = 1 << 20
DEFAULT_MAX_DEPTH = 16

# Tags that make cbor2 build shared/aliased/cyclic structures or depend on decoder state.
_FORBIDDEN_TAGS = frozenset({25, 28, 29, 256})


def head(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Decode the head at ``pos``: returns (major type, argument, position after the head).

    Indefinite lengths (additional information 31) and the reserved values 28..30 are
    rejected; the argument of a major-7 item is its simple value / float bits.
    """
    if pos >= end:
        raise VerificationError("cbor.truncated", "unexpected end of data")
    ib = data[pos]
    major = ib >> 5
    ai = ib & 0x1F
    pos += 1
    if ai < 24:
        return major, ai, pos
    if ai == 24:
        n = 1
    elif ai == 25:
        n = 2
    elif ai == 26:
        n = 4
    elif ai == 27:
        n = 8
    elif ai == 31:
        raise VerificationError("cbor.indefinite-length", "indefinite-length items are not accepted")
    else:
        raise VerificationError("cbor.malformed", f"reserved additional information {ai}")
    if pos + n > end:
        raise VerificationError("cbor.truncated", "unexpected end of data in a head")
    arg = int.from_bytes(data[pos : pos + n], "big")
    if major == 7 and n == 1 and arg < 32:
        raise VerificationError("cbor.malformed", "two-byte encoding of a simple value below 32")
    return major, arg, pos + n


def scan(data: bytes, pos: int = 0, end: int | None = None, *, max_depth: int = DEFAULT_MAX_DEPTH) -> int:
    """Check one well-formed data item starting at ``pos``; return the position after it.

    Depth counts arrays, maps and tags: a flat scalar has depth 0, ``[1]`` depth 1.
    The head decoding of :func:`head` is inlined here: this loop is on the hot path.
    """
    if end is None:
        end = len(data)
    stack: list[int] = []  # remaining child counts of the open containers
    from_bytes = int.from_bytes
    while True:
        if pos >= end:
            raise VerificationError("cbor.truncated", "unexpected end of data")
        ib = data[pos]
        major = ib >> 5
        ai = ib & 0x1F
        pos += 1
        if ai < 24:
            arg = ai
        elif ai < 28:
            n = 1 << (ai - 24)
            if pos + n > end:
                raise VerificationError("cbor.truncated", "unexpected end of data in a head")
            arg = data[pos] if n == 1 else from_bytes(data[pos : pos + n], "big")
            pos += n
            if major == 7 and n == 1 and arg < 32:
                raise VerificationError("cbor.malformed", "two-byte encoding of a simple value below 32")
        elif ai == 31:
            raise VerificationError("cbor.indefinite-length", "indefinite-length items are not accepted")
        else:
            raise VerificationError("cbor.malformed", f"reserved additional information {ai}")
        if major == 2 or major == 3:
            if arg > end - pos:
                raise VerificationError("cbor.truncated", "string longer than the remaining data")
            pos += arg
        elif major == 4 or major == 5:
            count = arg if major == 4 else 2 * arg
            if count > end - pos:
                raise VerificationError("cbor.truncated", "container longer than the remaining data")
            if count:
                if len(stack) >= max_depth:
                    raise VerificationError("cbor.depth", f"nesting deeper than {max_depth}")
                stack.append(count)
                continue
        elif major == 6:
            if arg in _FORBIDDEN_TAGS:
                raise VerificationError("cbor.tag", f"tag {arg} is not accepted")
            if len(stack) >= max_depth:
                raise VerificationError("cbor.depth", f"nesting deeper than {max_depth}")
            stack.append(1)
            continue
        # one complete item done: pop finished containers
        while stack:
            stack[-1] -= 1
            if stack[-1]:
                break
            stack.pop()
        if not stack:
            return pos


_SCALARS = (bytes, str, int, float, bool, type(None))


def normalize(obj: Any) -> Any:
    """Turn cbor2's immutable containers (tuple, frozendict) into lists and dicts.

    Only ever called on scanned (depth-bounded) data, so the recursion is bounded.
    """
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, (list, tuple)):
        return [x if isinstance(x, _SCALARS) else normalize(x) for x in obj]
    if isinstance(obj, dict) or type(obj).__name__ == "frozendict":
        return {k: (v if isinstance(v, _SCALARS) else normalize(v)) for k, v in obj.items()}
    return obj


class _Fallback(Exception):
    """Internal: the fast decoder met something it leaves to cbor2 (tags, floats...)."""


_MAX_FAST_DEPTH = 64


def _dec(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    """Recursive strict decoder for the common types (ints, strings, arrays, maps,
    false/true/null). Raises _Fallback for tags, floats and other simple values."""
    if pos >= end:
        raise VerificationError("cbor.truncated", "unexpected end of data")
    ib = data[pos]
    major = ib >> 5
    ai = ib & 0x1F
    pos += 1
    if ai < 24:
        arg = ai
    elif ai < 28:
        n = 1 << (ai - 24)
        if pos + n > end:
            raise VerificationError("cbor.truncated", "unexpected end of data in a head")
        arg = data[pos] if n == 1 else int.from_bytes(data[pos : pos + n], "big")
        pos += n
    elif ai == 31:
        raise VerificationError("cbor.indefinite-length", "indefinite-length items are not accepted")
    else:
        raise VerificationError("cbor.malformed", f"reserved additional information {ai}")
    if major == 0:
        return arg, pos
    if major == 2:
        if arg > end - pos:
            raise VerificationError("cbor.truncated", "string longer than the remaining data")
        return data[pos : pos + arg], pos + arg
    if major == 3:
        if arg > end - pos:
            raise VerificationError("cbor.truncated", "string longer than the remaining data")
        try:
            return data[pos : pos + arg].decode("utf-8"), pos + arg
        except UnicodeDecodeError:
            raise VerificationError("cbor.malformed", "text string is not valid UTF-8") from None
    if major == 1:
        return -1 - arg, pos
    if major == 4:
        if arg and depth <= 0:
            raise VerificationError("cbor.depth", "nesting too deep")
        if arg > end - pos:
            raise VerificationError("cbor.truncated", "container longer than the remaining data")
        out = []
        for _ in range(arg):
            item, pos = _dec(data, pos, end, depth - 1)
            out.append(item)
        return out, pos
    if major == 5:
        if arg and depth <= 0:
            raise VerificationError("cbor.depth", "nesting too deep")
        if 2 * arg > end - pos:
            raise VerificationError("cbor.truncated", "container longer than the remaining data")
        d: dict = {}
        for _ in range(arg):
            # small int keys and values (the usual COSE labels) are decoded inline
            kb = data[pos] if pos < end else 0xFF
            if kb < 0x18:
                k = kb
                pos += 1
            elif 0x20 <= kb < 0x38:
                k = 0x1F - kb
                pos += 1
            else:
                k, pos = _dec(data, pos, end, depth - 1)
                if isinstance(k, (list, dict)):
                    raise _Fallback
            vb = data[pos] if pos < end else 0xFF
            if vb < 0x18:
                v = vb
                pos += 1
            elif 0x20 <= vb < 0x38:
                v = 0x1F - vb
                pos += 1
            elif vb == 0x58 and pos + 1 < end and data[pos + 1] + pos + 2 <= end:
                # byte string with a one-byte length (kids, hashes, signatures)
                n = data[pos + 1]
                v = data[pos + 2 : pos + 2 + n]
                pos += 2 + n
            else:
                v, pos = _dec(data, pos, end, depth - 1)
            if k in d:
                raise VerificationError("cbor.duplicate-key", f"duplicate map key {k!r}")
            d[k] = v
        return d, pos
    if major == 7:
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22:
            return None, pos
    raise _Fallback


def decode_item(data: bytes, pos: int, end: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[Any, int]:
    """Strictly decode the data item at ``pos``; return (object, position after it).

    Plain data (ints, strings, arrays, maps, false/true/null) is decoded directly, with
    duplicate map keys refused; anything else (tags, floats, undefined) is first checked
    by :func:`scan` and then decoded by cbor2.
    """
    try:
        if max_depth > _MAX_FAST_DEPTH:
            raise _Fallback
        return _dec(data, pos, end, max_depth)
    except _Fallback:
        q = scan(data, pos, end, max_depth=max_depth)
        return loads_span(data, pos, q), q


def loads_span(data: bytes, start: int, end: int) -> Any:
    """Decode an already scanned span with cbor2 and normalise it."""
    try:
        obj = cbor2.loads(data[start:end])
    except VerificationError:
        raise
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, OverflowError...)
        raise VerificationError("cbor.malformed", f"cannot decode: {exc}") from None
    return normalize(obj)


def loads(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Strictly decode exactly one CBOR data item (no trailing bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VerificationError("cbor.type", "input is not bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise VerificationError("cbor.size", f"input larger than {max_size} bytes")
    obj, end = decode_item(data, 0, len(data), max_depth=max_depth)
    if end != len(data):
        raise VerificationError("cbor.trailing-bytes", f"{len(data) - end} bytes after the data item")
    return obj


def array_spans(data: bytes, pos: int, end: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[list[tuple[int, int]], int]:
    """Spans of the elements of the definite-length array at ``pos``; also the end position."""
    major, count, p = head(data, pos, end)
    if major != 4:
        raise VerificationError("cbor.type", "expected an array")
    spans = []
    for _ in range(count):
        q = scan(data, p, end, max_depth=max_depth - 1)
        spans.append((p, q))
        p = q
    return spans, p


def map_spans(
    data: bytes, pos: int, end: int, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[list[tuple[tuple[int, int], tuple[int, int]]], int]:
    """Spans of (key, value) pairs of the definite-length map at ``pos``; also the end position."""
    major, count, p = head(data, pos, end)
    if major != 5:
        raise VerificationError("cbor.type", "expected a map")
    pairs = []
    for _ in range(count):
        k = scan(data, p, end, max_depth=max_depth - 1)
        v = scan(data, k, end, max_depth=max_depth - 1)
        pairs.append(((p, k), (k, v)))
        p = v
    return pairs, p


# --- deterministic encoding -------------------------------------------------------------


def encode_head(major: int, arg: int) -> bytes:
    """Shortest head for ``major`` with argument ``arg``."""
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return bytes((mt | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((mt | 26,)) + arg.to_bytes(4, "big")
    if arg < 0x10000000000000000:
        return bytes((mt | 27,)) + arg.to_bytes(8, "big")
    raise ValueError("CBOR argument too large")


def encode_bstr(b: bytes) -> bytes:
    """A byte string item."""
    return encode_head(2, len(b)) + b


def dumps(obj: Any) -> bytes:
    """RFC 8949 4.2.1 core deterministic encoding (bytewise-sorted map keys)."""
    out: list[bytes] = []
    _enc(obj, out, 0)
    return b"".join(out)


def _enc(obj: Any, out: list[bytes], depth: int) -> None:
    if depth > 64:
        raise ValueError("structure too deep to encode")
    if obj is None:
        out.append(b"\xf6")
    elif obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif isinstance(obj, int):
        if obj >= 0:
            out.append(encode_head(0, obj))
        else:
            out.append(encode_head(1, -1 - obj))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        out.append(encode_head(2, len(b)))
        out.append(b)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        out.append(encode_head(3, len(b)))
        out.append(b)
    elif isinstance(obj, (list, tuple)):
        out.append(encode_head(4, len(obj)))
        for x in obj:
            _enc(x, out, depth + 1)
    elif isinstance(obj, dict) or type(obj).__name__ == "frozendict":
        items = []
        for k, v in obj.items():
            kb: list[bytes] = []
            _enc(k, kb, depth + 1)
            vb: list[bytes] = []
            _enc(v, vb, depth + 1)
            items.append((b"".join(kb), b"".join(vb)))
        items.sort(key=lambda kv: kv[0])
        for i in range(1, len(items)):
            if items[i][0] == items[i - 1][0]:
                raise ValueError("duplicate map key")
        out.append(encode_head(5, len(items)))
        for kb2, vb2 in items:
            out.append(kb2)
            out.append(vb2)
    elif isinstance(obj, cbor2.CBORTag):
        out.append(encode_head(6, obj.tag))
        _enc(obj.value, out, depth + 1)
    else:
        out.append(cbor2.dumps(obj, canonical=True))
