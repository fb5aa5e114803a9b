"""Fetching a record and the Workload Provenance it links to (optional; the checks are offline).

Internal binding: the record by the pointer's locator (``?rid=``). External binding: the
record by the credential's identifiers (``?iss=&jti=`` or ``?issuer_dn=&serial=``) and by its
SHA-256, at a log the relying party names. Either answer also carries the record's status
statements (revocations); the Workload Provenance the record links (and, asked, the logged
policies it references) is fetched from the same log.

Only from logs the relying party trusts: the pointer's log must be one of ``trusted_logs``
(``twi-verify credential --fetch`` passes its ``--log`` URLs, after the credential's signature
verified, so an unverified credential names no URL we contact) and every URL fetched must lie
under that log; each GET is size-capped, time-limited and follows no redirect to another host
(:mod:`verifier.http`).
"""

from __future__ import annotations

import urllib.parse

from ..errors import VerificationError
from .parse import CredentialInfo, Pointer
from .trust import norm_url
from .wire import LOOKUP_PATH


MAX_LOOKUP_BYTES = 16 << 20  # one lookup answer (the log pages /twi/v1/cpr by bytes)


MAX_PAGES = 64  # pages of one lookup followed (Link rel="next")


def _getter(timeout: float, log: str, max_bytes: int = MAX_LOOKUP_BYTES):
    """get(url) -> body, or get(url, paged=True) -> (body, next page URL or None); only URLs
    under ``log``."""
    from .. import http as vhttp

    log = norm_url(log)

    def get(url: str, paged: bool = False):
        if not url.startswith(log + "/") or not vhttp.same_origin(url, log):
            raise vhttp.HTTPLimitError(f"{url[:200]} is not under the log {log[:200]}")
        page = vhttp.get_page(url, timeout=timeout, max_bytes=max_bytes)
        return page if paged else page[0]
    return get


def _lookup(get, url: str, *, missing_ok: bool = False) -> list[bytes]:
    from .. import cbor

    out: list[bytes] = []
    page: str | None = url
    for _ in range(MAX_PAGES):  # the log pages its answers by bytes (Link rel="next")
        try:
            body, page = get(page, paged=True)
            arr = cbor.loads(body, max_size=MAX_LOOKUP_BYTES)
        except OSError as e:
            if missing_ok and not out and getattr(e, "code", None) == 404:
                return []
            raise VerificationError("fetch.record", f"cannot fetch {url[:200]}: {e}") from None
        if not isinstance(arr, list) or not all(isinstance(x, bytes) for x in arr):
            raise VerificationError("fetch.record", "lookup answer is not an array of statements")
        out += arr
        if page is None:
            return out
    raise VerificationError("fetch.record", f"{url[:200]}: more than {MAX_PAGES} pages")


def _with_linked_wprs(get, arr: list[bytes], log: str, policies: bool = False) -> list[bytes]:
    from .. import cbor
    from ..statement import SignedStatement

    out = list(arr)
    for ts in arr:
        st = SignedStatement.parse(ts)
        if st.hash_envelope is not None:
            continue
        try:
            rec = cbor.loads(st.payload, max_depth=12)
        except VerificationError:
            continue
        links = list((rec.get("workload_provenance") or []) if isinstance(rec, dict) else [])
        if policies and isinstance(rec, dict):
            from .logged_policy import policy_refs

            links += [{"uri": ref.get("entry")} for ref in policy_refs(rec).values()]
        for rd in links:
            uri = rd.get("uri") if isinstance(rd, dict) else None
            if isinstance(uri, str) and uri.startswith(norm_url(log) + "/entries/"):
                try:
                    out.append(get(uri + "/statement"))
                except OSError:
                    pass  # policy (e.g. SbomPresent, --check-policies) decides whether it was needed
    return out


def fetch_statements(pointer: Pointer, *, trusted_logs: list[str] | None = None,
                     timeout: float = 10.0, policies: bool = False) -> list[bytes]:
    """GET the record by its locator and the Workload Provenance it links to (best effort).
    ``trusted_logs``: the log URLs the relying party accepts (None: the pointer's own log, for
    callers that checked it themselves)."""
    if not pointer.log.startswith(("http://", "https://")):
        raise VerificationError("fetch.url", "the pointer's log is not an http(s) URL")
    if trusted_logs is not None and norm_url(pointer.log) not in {norm_url(u) for u in trusted_logs}:
        raise VerificationError("fetch.untrusted-log",
                                f"the pointer names the log {pointer.log[:200]!r}, not one given with --log")
    get = _getter(timeout, pointer.log)
    return _with_linked_wprs(get, _lookup(get, pointer.uri), pointer.log, policies)


def fetch_external(log: str, info: CredentialInfo, *, timeout: float = 10.0, policies: bool = False) -> list[bytes]:
    """External binding: the records naming this credential's identifiers or SHA-256 at ``log``
    (which the relying party chose), with their status statements and linked provenance."""
    if not log.startswith(("http://", "https://")):
        raise VerificationError("fetch.url", "the log is not an http(s) URL")
    get = _getter(timeout, log)
    ids = {"iss": info.iss or "", "jti": info.jti or ""} if info.format == "wit" else \
        {"issuer_dn": info.issuer_dn or "", "serial": info.serial or ""}
    out: list[bytes] = []
    for q in ((ids,) if all(ids.values()) else ()) + ({"sha256": info.sha256},):
        for ts in _lookup(get, f"{norm_url(log)}{LOOKUP_PATH}?{urllib.parse.urlencode(q)}", missing_ok=True):
            if ts not in out:
                out.append(ts)
    return _with_linked_wprs(get, out, log, policies)
