"""``GET /twi/v1/cpr``: Credential Provenance lookup (external binding) as a Flask blueprint.

Queries (exactly one form):

    ?rid=<record id>                 the record a credential's pointer names
    ?iss=<issuer>&jti=<jti>          a WIT's record
    ?issuer_dn=<RFC 4514>&serial=<hex>  an X.509 SVID's record
    ?sha256=<hex>                    by SHA-256 of the credential bytes (WIT: = WPT ``wth``, in hex)

200 ``application/cbor``: an array of transparent statements (each a bstr holding the
statement with its inclusion receipt under 394), oldest first, the matching records followed
by the status statements (revocations) of those records; 404 problem details when no record matches;
400 on a malformed query.

Paged by bytes: an answer holds whole statements up to ``page_bytes`` (setting, default 4 MiB;
always at least one); when more remain, a ``Link: <...&from=N>; rel="next"`` header names the
next page (``from``: the position in the answer's list, records then status statements). The
statements are read one at a time, so neither the answer nor the server's memory grows with
the number of matches. The app must register :data:`bp` and index entries with
``tlog.twi.index.attrs_for_statement`` (see that module). The blueprint finds the log
service in ``current_app.extensions["tlog.service"]`` (``lookup(key, value)``,
``resolve(str(index))``, ``transparent_statement(entry)``).
"""

from __future__ import annotations

import re
import urllib.parse

from flask import Blueprint, Response, current_app, request

from verifier import cbor as vcbor

from .index import ATTR_DN_SERIAL, ATTR_ISS_JTI, ATTR_RID, ATTR_SHA256, ATTR_STATUS_RID, MAX_VALUE, pair_key

bp = Blueprint("twi", __name__)

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_SERIAL = re.compile(r"^[0-9a-fA-F]{1,64}$")
PROBLEM = "application/concise-problem-details+cbor"


def _problem(status: int, title: str, detail: str) -> Response:
    return Response(vcbor.dumps({-1: title, -2: detail}), status=status, mimetype=PROBLEM)


def _query() -> tuple[str, str] | Response:
    a = request.args
    forms = [k for k in ("rid", "iss", "issuer_dn", "sha256") if k in a]
    if len(forms) != 1:
        return _problem(400, "Malformed request", "give exactly one of rid, iss&jti, issuer_dn&serial, sha256")
    f = forms[0]
    vals = [a.get(k, "") for k in {"rid": ("rid",), "iss": ("iss", "jti"), "issuer_dn": ("issuer_dn", "serial"),
                                   "sha256": ("sha256",)}[f]]
    if any(not v or "\x00" in v or len(v) > MAX_VALUE for v in vals):
        return _problem(400, "Malformed request", "query values must be non-empty text")
    if f == "rid":
        return ATTR_RID, vals[0]
    if f == "iss":
        return ATTR_ISS_JTI, pair_key(vals[0], vals[1])
    if f == "issuer_dn":
        if not _SERIAL.match(vals[1]):
            return _problem(400, "Malformed request", "serial must be hex")
        return ATTR_DN_SERIAL, pair_key(vals[0], vals[1].lower().lstrip("0") or "0")
    if not _HEX64.match(vals[0]):
        return _problem(400, "Malformed request", "sha256 must be 64 hex digits")
    return ATTR_SHA256, vals[0].lower()


@bp.get("/twi/v1/cpr")
def cpr_lookup():
    q = _query()
    if isinstance(q, Response):
        return q
    start = request.args.get("from", "0")
    if not (start.isascii() and start.isdigit() and len(start) <= 9):
        return _problem(400, "Malformed request", "from must be a decimal position")
    start = int(start)
    svc = current_app.extensions["tlog.service"]
    order = list(svc.lookup(*q))
    if not order:
        return _problem(404, "Not Found", "no Credential Provenance record matches")
    rids = [q[1]] if q[0] == ATTR_RID else _rids(_statements(svc, order))
    seen: set = set(order)
    for rid in rids:
        idx = [i for i in svc.lookup(ATTR_STATUS_RID, rid) if i not in seen]
        seen.update(idx)
        order += idx
    budget = int(getattr(svc.config, "page_bytes", 4 << 20))
    out, size, nxt = [], 0, None
    for pos in range(start, len(order)):
        ts = _statement(svc, order[pos])
        if ts is None:
            continue
        if out and size + len(ts) > budget:
            nxt = pos
            break
        out.append(ts)
        size += len(ts)
    if not out and start == 0:
        return _problem(404, "Not Found", "no Credential Provenance record matches")
    resp = Response(vcbor.dumps(out), status=200, mimetype="application/cbor")
    resp.headers["Cache-Control"] = "public, max-age=5"
    if nxt is not None:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "from"] + [("from", str(nxt))]
        resp.headers["Link"] = f'<{request.path}?{urllib.parse.urlencode(args)}>; rel="next"'
    return resp


def _statement(svc, index) -> bytes | None:
    _leaf, entry = svc.resolve(str(index))
    if entry is None or entry == "pending":
        return None
    return svc.transparent_statement(entry)


def _statements(svc, indexes):
    """The transparent statements of ``indexes``, read one at a time (a generator)."""
    for index in indexes:
        ts = _statement(svc, index)
        if ts is not None:
            yield ts


def _rids(statements) -> list[str]:
    """The record ids (CWT cti) of the records found, in order, once each."""
    from verifier import VerificationError
    from verifier.statement import SignedStatement

    rids: list[str] = []
    for ts in statements:
        try:
            cti = SignedStatement.parse(ts).cwt_claims.get(7)
            rid = cti.decode("utf-8") if isinstance(cti, bytes) else None
        except (VerificationError, UnicodeDecodeError):
            rid = None
        if rid and rid not in rids:
            rids.append(rid)
    return rids


def install(app) -> None:
    """Wire TWI into a tlog app: register :data:`bp` and index CPR attributes at registration.

    The indexing wraps the service's ``log.submit`` so every admitted statement also gets
    :func:`tlog.twi.index.attrs_for_statement` pairs. A server whose
    ``LogService`` has the TWI personality (:data:`tlog.twi.TWI`) only needs
    ``app.register_blueprint(bp)``; calling :func:`install` as well is harmless (the
    wrapper is installed once, and duplicate pairs are dropped).
    """
    from verifier import VerificationError
    from verifier.statement import SignedStatement

    from .index import attrs_for_statement

    if "twi" not in app.blueprints:
        app.register_blueprint(bp)
    log = app.extensions["tlog.service"].log
    if getattr(log.submit, "_twi_indexed", False):
        return
    orig = log.submit

    def submit(leaf_input, data, attrs=(), key=None):
        try:
            extra = attrs_for_statement(SignedStatement.parse(data))
        except VerificationError:
            extra = []
        have = set(map(tuple, attrs))
        return orig(leaf_input, data, tuple(attrs) + tuple(a for a in extra if a not in have), key)

    submit._twi_indexed = True  # type: ignore[attr-defined]
    log.submit = submit
