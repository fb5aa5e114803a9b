"""Fetching a record and the Workload Provenance it links to (optional; the checks are offline)."""

from __future__ import annotations

from ..errors import VerificationError
from .parse import Pointer
from .trust import norm_url


def fetch_statements(pointer: Pointer, *, timeout: float = 10.0) -> list[bytes]:
    """GET the record by its locator and the Workload Provenance it links to (best effort)."""
    import urllib.request

    from .. import cbor

    def get(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http(s) URLs from the credential)
            return r.read()

    if not pointer.log.startswith(("http://", "https://")):
        raise VerificationError("fetch.url", "the pointer's log is not an http(s) URL")
    try:
        arr = cbor.loads(get(pointer.uri))
    except OSError as e:
        raise VerificationError("fetch.record", f"cannot fetch {pointer.uri}: {e}") from None
    if not isinstance(arr, list) or not all(isinstance(x, bytes) for x in arr):
        raise VerificationError("fetch.record", "lookup answer is not an array of statements")
    out = list(arr)
    from ..statement import SignedStatement

    for ts in arr:
        st = SignedStatement.parse(ts)
        if st.hash_envelope is not None:
            continue
        try:
            rec = cbor.loads(st.payload, max_depth=12)
        except VerificationError:
            continue
        for rd in (rec.get("workload_provenance") or []) if isinstance(rec, dict) else []:
            uri = rd.get("uri") if isinstance(rd, dict) else None
            if isinstance(uri, str) and uri.startswith(norm_url(pointer.log) + "/entries/"):
                try:
                    out.append(get(uri + "/statement"))
                except OSError:
                    pass  # policy (e.g. SbomPresent) decides whether the WPR was needed
    return out
