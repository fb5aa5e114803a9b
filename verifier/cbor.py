"""Strict, bounded CBOR helpers for the verifier (RFC 8949).

Decoding (:func:`loads`, :func:`decode_item`) is one strict, bounded decoder of our own
(no fallback to a lax decoder, cbor2 is not used to decode): definite lengths only, lengths
checked against the remaining bytes, nesting depth bounded, the number of items of all
containers bounded *at each container's head* (before anything is built), duplicate map keys
refused at every depth, map keys only int, text or byte strings (so ``1``, ``1.0``, ``true``
and a bignum ``1`` never meet in one dict), tags kept as :class:`cbor2.CBORTag` and never
interpreted (a bignum is not an int), a small deny-list of tags (value sharing and string
references). Header mode (RFC 9052 header maps, :data:`HEADER_MAX_LABELS`) also requires
labels to be ints or text strings in their shortest encoding, in every nested map.

:func:`scan` walks one data item *without building it* (same well-formedness and depth
rules, iterative); it reports raw byte spans (:func:`array_spans`, :func:`map_spans`), which
lets COSE code keep received bytes verbatim instead of re-encoding them.

Error messages never format an unbounded value (:func:`brief`).

Encoding (:func:`dumps`) is RFC 8949 section 4.2.1 core deterministic encoding: shortest
heads, definite lengths, map keys sorted by the bytewise order of their encodings.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

from .errors import VerificationError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MAX_ITEMS",
    "HEADER_MAX_LABELS",
    "HEADER_MAX_ITEMS",
    "brief",
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
# Items (array elements, map keys and values, tagged items) in one decoded input, all
# containers together: a bound on the work any input can cause (~0.3 us each).
DEFAULT_MAX_ITEMS = 1 << 14
# Header maps (RFC 9052): labels per map at any depth, items in one header.
HEADER_MAX_LABELS = 64
HEADER_MAX_ITEMS = 4096
# The decoder recurses once per nesting level.
_MAX_DEPTH = 64

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

    For objects decoded by cbor2 elsewhere (tests, interop); this module's decoder already
    returns lists and dicts. Recursion is bounded by the nesting of ``obj``.
    """
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, (list, tuple)):
        return [x if isinstance(x, _SCALARS) else normalize(x) for x in obj]
    if isinstance(obj, dict) or type(obj).__name__ == "frozendict":
        return {k: (v if isinstance(v, _SCALARS) else normalize(v)) for k, v in obj.items()}
    return obj


def brief(value: Any, limit: int = 48) -> str:
    """A bounded text for ``value`` in an error message: never formats more than ``limit``
    characters of it (a 4,300-digit int or a megabyte string must not become the message)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 64:
            return f"<{value.bit_length()}-bit integer>"
        return str(value)
    if isinstance(value, (str, bytes, bytearray)):
        if len(value) <= limit:
            return repr(value)
        return repr(value[:limit]) + f"... ({len(value)} {'characters' if isinstance(value, str) else 'bytes'})"
    if isinstance(value, (float, bool)) or value is None:
        return repr(value)
    if isinstance(value, cbor2.CBORTag):
        return f"tag {brief(value.tag)}"
    return f"<{type(value).__name__}>"


def brief_hex(value: bytes, limit: int = 32) -> str:
    """Hex of at most ``limit`` bytes of ``value`` (a kid, a hash) for an error message."""
    if len(value) <= limit:
        return value.hex()
    return f"{value[:limit].hex()}... ({len(value)} bytes)"


def _short_ai(arg: int) -> int:
    """The additional information of the shortest head for ``arg``."""
    if arg < 24:
        return arg
    if arg < 0x100:
        return 24
    if arg < 0x10000:
        return 25
    if arg < 0x100000000:
        return 26
    return 27


_HALF = struct.Struct(">e").unpack_from
_SINGLE = struct.Struct(">f").unpack_from
_DOUBLE = struct.Struct(">d").unpack_from


def _dec(data: bytes, pos: int, end: int, depth: int, budget: list, labels: int) -> tuple[Any, int]:
    """The strict decoder (the only one: there is no fallback).

    Builds ints (major 0/1 only: a bignum stays a tag), byte and text strings, lists, dicts,
    :class:`cbor2.CBORTag` for every tag (never interpreted), floats, false/true/null/undefined.
    Refuses indefinite lengths, reserved and unassigned simple values, the deny-listed tags,
    duplicate map keys, map keys other than int/tstr/bstr (so 1 and 1.0, 1 and true, 1 and
    bignum 1 can never meet in a dict), more than ``budget[0]`` items in all (checked at each
    container head, before anything is built) and nesting deeper than ``depth``.

    ``labels`` > 0 is header mode (RFC 9052 header maps and every map nested in them): keys
    only int or tstr in their shortest encoding, at most ``labels`` entries per map.
    """
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
        if not arg:
            return [], pos
        if depth <= 0:
            raise VerificationError("cbor.depth", "nesting too deep")
        if arg > end - pos:
            raise VerificationError("cbor.truncated", "container longer than the remaining data")
        budget[0] -= arg
        if budget[0] < 0:
            raise VerificationError("cbor.items", "too many data items")
        out = []
        for _ in range(arg):
            item, pos = _dec(data, pos, end, depth - 1, budget, labels)
            out.append(item)
        return out, pos
    if major == 5:
        if not arg:
            return {}, pos
        if depth <= 0:
            raise VerificationError("cbor.depth", "nesting too deep")
        if 2 * arg > end - pos:
            raise VerificationError("cbor.truncated", "container longer than the remaining data")
        if labels and arg > labels:
            raise VerificationError("cbor.labels", f"header map of {arg} labels (at most {labels})")
        budget[0] -= 2 * arg
        if budget[0] < 0:
            raise VerificationError("cbor.items", "too many data items")
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
                kmajor = kb >> 5
                if kmajor > 3 or (labels and kmajor == 2):
                    raise VerificationError(
                        "cbor.key-type", "a header label must be an int or a text string" if labels
                        else "a map key must be an int, a text string or a byte string")
                kpos = pos
                k, pos = _dec(data, pos, end, depth - 1, budget, labels)
                if labels and (kb & 0x1F) != _short_ai(
                        k if kmajor == 0 else -1 - k if kmajor == 1 else len(k.encode("utf-8"))):
                    raise VerificationError("cbor.non-shortest", f"header label at offset {kpos} is not in its shortest encoding")
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
                v, pos = _dec(data, pos, end, depth - 1, budget, labels)
            if k in d:
                raise VerificationError("cbor.duplicate-key", f"duplicate map key {brief(k)}")
            d[k] = v
        return d, pos
    if major == 6:
        if arg in _FORBIDDEN_TAGS:
            raise VerificationError("cbor.tag", f"tag {arg} is not accepted")
        if depth <= 0:
            raise VerificationError("cbor.depth", "nesting too deep")
        budget[0] -= 1
        if budget[0] < 0:
            raise VerificationError("cbor.items", "too many data items")
        v, pos = _dec(data, pos, end, depth - 1, budget, labels)
        return cbor2.CBORTag(arg, v), pos
    # major 7
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22:
        return None, pos
    if ai == 23:
        return cbor2.undefined, pos
    if ai == 25:
        return _HALF(data, pos - 2)[0], pos
    if ai == 26:
        return _SINGLE(data, pos - 4)[0], pos
    if ai == 27:
        return _DOUBLE(data, pos - 8)[0], pos
    if ai == 24 and arg < 32:
        raise VerificationError("cbor.malformed", "two-byte encoding of a simple value below 32")
    raise VerificationError("cbor.simple", f"unassigned simple value {arg}")


def decode_item(
    data: bytes,
    pos: int,
    end: int,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    header_labels: int = 0,
) -> tuple[Any, int]:
    """Strictly decode the data item at ``pos``; return (object, position after it).

    See :func:`_dec` for what is accepted. ``max_items`` bounds the items of all containers
    together (checked at each container's head, before its items are decoded), so no input
    costs more than that many steps. ``header_labels`` > 0: header mode (RFC 9052 labels).
    """
    if max_depth > _MAX_DEPTH:
        raise VerificationError("cbor.depth", f"a nesting limit above {_MAX_DEPTH} is not supported")
    return _dec(data, pos, end, max_depth, [max_items], header_labels)


def loads_span(data: bytes, start: int, end: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode exactly the span ``data[start:end]`` (one data item)."""
    obj, q = decode_item(data, start, end, max_depth=max_depth)
    if q != end:
        raise VerificationError("cbor.trailing-bytes", f"{end - q} bytes after the data item")
    return obj


def loads(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Any:
    """Strictly decode exactly one CBOR data item (no trailing bytes)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VerificationError("cbor.type", "input is not bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise VerificationError("cbor.size", f"input larger than {max_size} bytes")
    obj, end = decode_item(data, 0, len(data), max_depth=max_depth, max_items=max_items)
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
