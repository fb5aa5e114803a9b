"""What the explorer pages show, read from the log service (no HTTP here).

Everything shown is the server's decoding, for people to read. The verdict on an entry is not:
the entry page hands the browser the raw statement and receipt bytes, and ``explorer.js``
recomputes the root and checks the receipt signature against a key the viewer pinned.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from verifier import VerificationError
from verifier import cbor as vcbor
from verifier.credential import CPR_MEDIA_TYPE, STATUS_MEDIA_TYPE
from verifier.receipt import VDP_INCLUSION, Receipt
from verifier.statement import SignedStatement

from ..attrs import ATTR_ISS, ATTR_ISS_SUB, entry_id_of, iss_sub_key
from ..errors import BadRequest, NotFound
from ..twi.index import ATTR_DN_SERIAL, ATTR_ISS_JTI, ATTR_RID, ATTR_SHA256, ATTR_STATUS_RID, pair_key

PAGE = 25  # entries per list page
MAX_FIELD = 240  # characters of one shown value

HEADER_NAMES = {1: "alg", 2: "crit", 3: "content type", 4: "kid", 15: "CWT claims", 16: "typ",
                33: "x5chain", 34: "x5t", 258: "payload hash alg", 259: "preimage content type",
                260: "payload location", 395: "verifiable data structure"}
CWT_NAMES = {1: "iss", 2: "sub", 3: "aud", 4: "exp", 5: "nbf", 6: "iat", 7: "cti"}
ALG_NAMES = {-7: "ES256", -35: "ES384", -36: "ES512", -8: "EdDSA", -19: "Ed25519", -37: "PS256",
             -38: "PS384", -39: "PS512", -16: "SHA-256"}


def brief(v: Any, limit: int = MAX_FIELD) -> str:
    """A value as short readable text: bytes in hex, long text cut with an ellipsis."""
    if isinstance(v, (bytes, bytearray)):
        s = bytes(v).hex()
        return s if len(s) <= limit else s[:limit] + f"… ({len(v)} bytes)"
    if isinstance(v, str):
        return v if len(v) <= limit else v[:limit] + "…"
    if isinstance(v, (list, tuple, dict)):
        try:
            s = json.dumps(_jsonable(v), ensure_ascii=False)
        except (TypeError, ValueError):
            s = repr(v)
        return s if len(s) <= limit else s[:limit] + "…"
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


def tree(v: Any, depth: int = 0) -> Any:
    """A decoded payload as nested ``("map", [(key, tree)])`` / ``("list", [...])`` /
    ``("leaf", text)`` for the template's definition lists (depth and width bounded)."""
    if depth >= 6:
        return ("leaf", brief(v))
    if isinstance(v, dict) and v:
        return ("map", [(str(k), tree(x, depth + 1)) for k, x in list(v.items())[:64]])
    if isinstance(v, (list, tuple)) and v and any(isinstance(x, (dict, list)) for x in v):
        return ("list", [tree(x, depth + 1) for x in list(v)[:64]])
    return ("leaf", brief(v))


def _hdr_value(label: Any, v: Any) -> str:
    if label == 1 or label == 258:
        return f"{v} ({ALG_NAMES[v]})" if v in ALG_NAMES else brief(v)
    if label == 15 and isinstance(v, dict):
        parts = []
        for k, x in v.items():
            name = CWT_NAMES.get(k, str(k))
            if k in (4, 5, 6) and isinstance(x, int):
                x = f"{x} ({_utc(x)})"
            elif isinstance(x, bytes) and k == 7:
                try:
                    x = x.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            parts.append(f"{name}: {brief(x, 120)}")
        return "; ".join(parts)
    if label == 33:
        certs = v if isinstance(v, list) else [v]
        return f"{len(certs)} certificate(s)"
    return brief(v)


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def header_rows(protected: dict) -> list[tuple[str, str, str]]:
    return [(str(k), HEADER_NAMES.get(k, ""), _hdr_value(k, v)) for k, v in protected.items()]


def summary(svc, index: int) -> dict:
    """One row of a list: index, id, iss, sub, content type, signer kid, iat."""
    leaf = svc.log.leaf_input(index)
    row: dict = {"index": index, "id": entry_id_of(leaf) if leaf else "?", "iss": "", "sub": "", "cty": "",
                 "kid": "", "time": ""}
    data = svc.log.entry_data(index)
    try:
        st = SignedStatement.parse(data)
    except (VerificationError, TypeError):
        row["cty"] = "(undecodable)"
        return row
    he = st.hash_envelope
    row.update(iss=st.iss, sub=st.sub, kid=st.kid.hex()[:16] if st.kid else "",
               cty=(f"hash envelope of {he.preimage_content_type}" if he else str(st.content_type or "")))
    iat = st.cwt_claims.get(6)
    if isinstance(iat, int):
        row["time"] = _utc(iat)
    return row


def entries_page(svc, before: int | None) -> dict:
    """Newest first: the PAGE entries below ``before`` (default: the tree size)."""
    size = svc.tree_size()
    top = size if before is None else min(before, size)
    idx = list(range(top - 1, max(top - PAGE, 0) - 1, -1))
    return {"size": size, "rows": [summary(svc, i) for i in idx],
            "newer": top + PAGE if top < size else None, "older": idx[-1] if idx and idx[-1] > 0 else None}


def overview(svc, cache: dict | None = None) -> dict:
    """``cache``: a dict kept across requests (the rate chart is recomputed once per tree size)."""
    head = svc.latest()
    text = head.checkpoint if isinstance(head.checkpoint, str) else head.checkpoint.decode()
    witnesses = None
    if getattr(svc, "witnessing", None) is not None:
        try:
            text = svc.witnessing.served_note()
        except Exception:  # noqa: BLE001 - no cosigned checkpoint yet: show the log's own
            pass
        lags = svc.operations_state().get("witnesses") or {}
        sizes, lag = lags.get("size", {}), lags.get("lag", {})
        witnesses = {"rows": [{"name": n, "size": sizes[n], "lag": lag.get(n, 0.0)} for n in sorted(sizes)],
                     "quorum": svc.witnessing.quorum, "quorum_lag": lags.get("quorum_lag", 0.0)}
    now = time.time()
    return {"origin": svc.origin, "size": head.size, "checkpoint": text, "age": max(0.0, now - head.timestamp),
            "time": _utc(head.timestamp), "witnesses": witnesses, "rate": _cached_rate(svc, head.size, cache)}


def _cached_rate(svc, size: int, cache: dict | None) -> list:
    if cache is None:
        return registration_rate(svc, size)
    hit = cache.get("rate")
    if hit is None or hit[0] != size:
        hit = cache["rate"] = (size, registration_rate(svc, size))
    return hit[1]


def registration_rate(svc, size: int, buckets: int = 24) -> list[tuple[str, int]]:
    """Entries per bucket over the issuers' iat of the newest 500 entries (for the chart)."""
    iats = []
    for i in range(max(0, size - 500), size):
        try:
            iat = SignedStatement.parse(svc.log.entry_data(i)).cwt_claims.get(6)
        except (VerificationError, TypeError):
            continue
        if isinstance(iat, int):
            iats.append(iat)
    if not iats:
        return []
    lo, hi = min(iats), max(iats)
    width = -(-(hi - lo + 1) // buckets)
    counts = [0] * ((hi - lo) // width + 1)  # the last bucket holds the newest entry
    for t in iats:
        counts[(t - lo) // width] += 1
    return [(_utc(lo + k * width), c) for k, c in enumerate(counts)]


def inclusion_sides(index: int, size: int, n: int) -> list[str]:
    """For each proof node (RFC 9162 2.1.3.2), the side it is hashed on: "left" or "right"."""
    fn, sn, out = index, size - 1, []
    for _ in range(n):
        if sn == 0:
            out.append("?")
            continue
        if fn & 1 or fn == sn:
            out.append("left")
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            out.append("right")
        fn >>= 1
        sn >>= 1
    return out


def entry(svc, entry_id: str) -> dict:
    leaf, st = svc.resolve(entry_id)  # BadRequest on a malformed id
    if st is None:
        raise NotFound("Not Found", f"no entry {entry_id} in this log")
    eid = entry_id_of(leaf)
    if st == "pending":
        return {"id": eid, "pending": True}
    data = svc.log.entry_data(st.index)
    receipt = svc.entry_receipt(st)
    stmt = SignedStatement.parse(data)
    rc = Receipt.parse(receipt)
    size, index, path = rc.proofs(VDP_INCLUSION)[0]
    out = {"id": eid, "pending": False, "index": st.index, "tree_size": size,
           "statement_hex": data.hex(), "receipt_hex": receipt.hex(), "statement_len": len(data),
           "receipt_len": len(receipt),
           "header": header_rows(stmt.sign1.protected),
           "receipt_header": header_rows(rc.sign1.protected),
           "path": list(zip([p.hex() for p in path], inclusion_sides(index, size, len(path)))),
           "receipt_kid": rc.kid.hex() if rc.kid else "",
           "signature": brief(rc.sign1.signature)}
    out.update(payload_view(stmt))
    return out


def payload_view(stmt: SignedStatement) -> dict:
    p, he = stmt.payload, stmt.hash_envelope
    if p is None:
        return {"payload_kind": "detached", "payload": None}
    base = {"payload_len": len(p), "payload_sha256": hashlib.sha256(p).hexdigest()}
    if he is not None:
        return {**base, "payload_kind": "hash envelope",
                "payload": ("map", [("hash of the private record", ("leaf", p.hex())),
                                    ("hash alg", ("leaf", _hdr_value(258, he.hash_alg))),
                                    ("preimage content type", ("leaf", brief(he.preimage_content_type))),
                                    ("location", ("leaf", brief(he.location)))])}
    cty = stmt.content_type
    if isinstance(cty, str) and (cty.endswith("+cbor") or cty in (CPR_MEDIA_TYPE, STATUS_MEDIA_TYPE)):
        try:
            return {**base, "payload_kind": cty, "payload": tree(vcbor.loads(p, max_depth=16))}
        except VerificationError:
            pass
    if isinstance(cty, str) and "json" in cty:
        try:
            return {**base, "payload_kind": cty, "payload": tree(json.loads(p))}
        except ValueError:
            pass
    try:
        text = p.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\n\r\t" for c in text):
            return {**base, "payload_kind": str(cty or "text"), "payload": ("leaf", brief(text, 2000))}
    except UnicodeDecodeError:
        pass
    return {**base, "payload_kind": str(cty or "bytes"), "payload": ("leaf", brief(p, 512))}


SEARCH_KINDS = [
    ("entry", "entry id (64 hex) or index"),
    ("rid", "record id"),
    ("iss_jti", "WIT: iss + jti"),
    ("dn_serial", "X.509: issuer DN + serial (hex)"),
    ("sha256", "SHA-256 of a credential (hex)"),
    ("iss_sub", "statement iss [+ sub]"),
]


def search(svc, kind: str, a: str, b: str) -> list[int]:
    """Indexes matching the query (the same lookups as GET /entries and /twi/v1/cpr)."""
    a, b = a.strip(), b.strip()
    if not a or "\x00" in a + b or len(a) > 4096 or len(b) > 4096:
        raise BadRequest("Malformed search", "give a non-empty value (at most 4096 characters)")
    if kind == "entry":
        leaf, st = svc.resolve(a.lower() if len(a) == 64 else a)
        return [] if st in (None, "pending") else [st.index]
    if kind == "rid":
        return svc.lookup(ATTR_RID, a)
    if kind == "sha256":
        if len(a) != 64 or any(c not in "0123456789abcdef" for c in a.lower()):
            raise BadRequest("Malformed search", "a SHA-256 is 64 hex digits")
        return svc.lookup(ATTR_SHA256, a.lower())
    if kind == "iss_sub":
        return svc.lookup(ATTR_ISS_SUB, iss_sub_key(a, b)) if b else svc.lookup(ATTR_ISS, a)
    if not b:
        raise BadRequest("Malformed search", "this search needs both values")
    if kind == "iss_jti":
        return svc.lookup(ATTR_ISS_JTI, pair_key(a, b))
    if kind == "dn_serial":
        s = b.lower().removeprefix("0x")
        if not s or any(c not in "0123456789abcdef" for c in s):
            raise BadRequest("Malformed search", "the serial is hex")
        return svc.lookup(ATTR_DN_SERIAL, pair_key(a, s.lstrip("0") or "0"))
    raise BadRequest("Malformed search", f"unknown search kind {kind[:40]!r}")


MAX_CREDENTIAL = 64 * 1024


def credential_search(svc, data: bytes) -> dict:
    """A pasted or uploaded credential (WIT, or X.509 SVID in PEM or DER), parsed without checking
    its signature (it only names what to look up): its provenance records, found by every key it
    carries (SHA-256 of its bytes, its pointer's record id, (iss, jti), issuer DN + serial), and
    the status statements (revocations) of those records."""
    from verifier.credential import parse_credential

    if not data.strip():
        raise BadRequest("Malformed search", "paste a credential or choose a file")
    if len(data) > MAX_CREDENTIAL:
        raise BadRequest("Malformed search", f"a credential is at most {MAX_CREDENTIAL} bytes")
    try:
        info = parse_credential(data)
    except VerificationError as e:
        raise BadRequest("Not a credential", f"neither a WIT nor an X.509 certificate: {e}") from None
    found = set(svc.lookup(ATTR_SHA256, info.sha256))
    rids = []
    if info.pointer is not None:
        rids.append(info.pointer.rid)
        found.update(svc.lookup(ATTR_RID, info.pointer.rid))
    if info.iss and info.jti:
        found.update(svc.lookup(ATTR_ISS_JTI, pair_key(info.iss, info.jti)))
    if info.issuer_dn and info.serial:
        found.update(svc.lookup(ATTR_DN_SERIAL, pair_key(info.issuer_dn, info.serial)))
    for i in sorted(found):
        try:
            cti = SignedStatement.parse(svc.log.entry_data(i)).cwt_claims.get(7)
            rid = cti.decode("utf-8") if isinstance(cti, bytes) else None
        except (VerificationError, UnicodeDecodeError):
            rid = None
        if rid and rid not in rids:
            rids.append(rid)
    status = sorted({i for rid in rids for i in svc.lookup(ATTR_STATUS_RID, rid)} - found)
    facts = [("format", info.format), ("sub", info.sub), ("iss", info.iss), ("jti", info.jti),
             ("issuer DN", info.issuer_dn), ("serial", info.serial), ("SHA-256", info.sha256),
             ("record id (pointer)", info.pointer.rid if info.pointer else None),
             ("expires", _utc(info.exp) if isinstance(info.exp, int) else None)]
    return {"facts": [(k, v) for k, v in facts if v], "rows": [summary(svc, i) for i in sorted(found)],
            "status": [summary(svc, i) for i in status]}


def consistency(svc, n: int, m: int) -> dict:
    size = svc.tree_size()
    if not (1 <= n <= m <= size):
        raise BadRequest("Malformed request", f"need 1 <= from <= to <= {size} (the current tree size)")
    nodes = svc.log.consistency_proof(n, m) if n < m else []
    return {"from": n, "to": m, "root_from": svc.log.root(n).hex(), "root_to": svc.log.root(m).hex(),
            "nodes": [x.hex() for x in nodes]}


def published_keys(svc) -> list[dict]:
    """The receipt keys the log publishes (JWK) with their RFC 9679 thumbprints, for the viewer
    to compare out of band before pinning one."""
    out = []
    for jwk in svc.jwks()["keys"]:
        out.append({"jwk": json.dumps({k: jwk[k] for k in ("kty", "crv", "x", "y")}),
                    "thumbprint": _jwk_thumbprint(jwk),
                    "kid": jwk.get("kid", "")})
    return out


def _jwk_thumbprint(jwk: dict) -> str:
    import base64

    def d(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    crv = {"P-256": 1, "P-384": 2, "P-521": 3}[jwk["crv"]]
    return hashlib.sha256(vcbor.dumps({1: 2, -1: crv, -2: d(jwk["x"]), -3: d(jwk["y"])})).hexdigest()
