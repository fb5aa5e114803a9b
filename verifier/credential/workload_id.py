"""Workload identifiers (draft-ietf-wimse-identifier, SPIFFE ID)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import VerificationError

_SPIFFE_TD = re.compile(r"[a-z0-9._-]+")
_SPIFFE_SEG = re.compile(r"[A-Za-z0-9._-]+")
_WIMSE_TD = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_WIMSE_SEG = re.compile(r"([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


def validate_workload_id(wid: Any) -> str:
    """Check a Workload Identifier: ``spiffe://td/path`` or ``wimse://td/path``; returns it.

    No query, fragment, userinfo or port; non-empty trust domain and path; at most 2048
    bytes; SPIFFE character sets for spiffe://.
    """
    if not isinstance(wid, str) or not wid:
        raise VerificationError("credential.sub", "workload identifier missing")
    if len(wid.encode()) > 2048:
        raise VerificationError("credential.sub", "workload identifier longer than 2048 bytes")
    m = re.fullmatch(r"(spiffe|wimse)://([^/?#]*)(/[^?#]*)", wid)
    if not m:
        raise VerificationError("credential.sub", f"{wid!r} is not a spiffe:// or wimse:// identifier with a path")
    scheme, td, path = m.groups()
    if "@" in td or ":" in td:
        raise VerificationError("credential.sub", "userinfo and port are not allowed in a workload identifier")
    segs = path[1:].split("/")
    if scheme == "spiffe":
        if not _SPIFFE_TD.fullmatch(td):
            raise VerificationError("credential.sub", f"invalid SPIFFE trust domain {td!r}")
        seg_re = _SPIFFE_SEG
    else:
        if not _WIMSE_TD.fullmatch(td):
            raise VerificationError("credential.sub", f"invalid trust domain {td!r}")
        seg_re = _WIMSE_SEG
    for s in segs:
        if not s or s in (".", "..") or not seg_re.fullmatch(s):
            raise VerificationError("credential.sub", f"invalid path segment {s!r} in {wid!r}")
    return wid
