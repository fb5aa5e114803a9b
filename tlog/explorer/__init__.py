"""The log explorer: HTML pages for people, served by the log's own Flask app.

    GET /                       (tlog.server.app) the overview for browsers (Accept names text/html);
                                every other client gets the CBOR 404 problem it got before
    GET /explorer/              overview: origin, tree size, checkpoint and its age, witnesses, rate
    GET /explorer/entries[?before=N]   entries newest first, paged
    GET /explorer/entries/<id>  one entry; explorer.js verifies it in the page (see model.py)
    GET /explorer/search?kind=&a=&b=   search by record id, (iss, jti), DN + serial, SHA-256, iss/sub
    POST /explorer/search/credential   a pasted or uploaded credential (WIT, PEM/DER X.509 SVID):
                                its provenance records and their status statements
    GET /explorer/consistency?from=&to= consistency proof nodes between two tree sizes

Thin: parsing and status codes; what a page shows comes from :mod:`tlog.explorer.model`.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, render_template, request

from ..errors import BadRequest, NotFound
from . import model

bp = Blueprint("explorer", __name__, template_folder="templates", static_folder="static",
               static_url_path="/explorer/static")

_UINT = re.compile(r"^(0|[1-9][0-9]{0,18})$")
# the pages load only their own script and style; nothing from other hosts, no inline script
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def _svc():
    return current_app.extensions["tlog.service"]


def _page(template: str, status: int = 200, **ctx) -> Response:
    resp = Response(render_template(f"explorer/{template}", **ctx), status=status, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _uint(name: str) -> int | None:
    v = request.args.get(name)
    if v is None or v == "":
        return None
    if not _UINT.match(v):
        raise BadRequest("Malformed request", f"{name} must be a decimal integer")
    return int(v)


def wants_html() -> bool:
    """True when the client names text/html itself (browsers); ``*/*`` alone keeps the API answer."""
    return any(m == "text/html" and q > 0 for m, q in request.accept_mimetypes)


@bp.errorhandler(BadRequest)
def _bad(e: BadRequest):
    return _page("error.html", 400, title=e.title, detail=e.detail)


@bp.errorhandler(NotFound)
def _nf(e: NotFound):
    return _page("error.html", 404, title=e.title, detail=e.detail)


@bp.get("/explorer/")
def overview():
    cache = current_app.extensions.setdefault("tlog.explorer", {})
    return _page("overview.html", ov=model.overview(_svc(), cache))


@bp.get("/explorer/entries")
def entries():
    return _page("entries.html", page=model.entries_page(_svc(), _uint("before")))


@bp.get("/explorer/entries/<entry_id>")
def entry(entry_id: str):
    svc = _svc()
    return _page("entry.html", e=model.entry(svc, entry_id), keys=model.published_keys(svc), origin=svc.origin)


@bp.get("/explorer/search")
def search():
    kind = request.args.get("kind", "rid")
    a, b = request.args.get("a", ""), request.args.get("b", "")
    rows = None
    if "a" in request.args:
        svc = _svc()
        rows = [model.summary(svc, i) for i in model.search(svc, kind, a, b)[: model.PAGE * 4]]
    return _page("search.html", kinds=model.SEARCH_KINDS, kind=kind, a=a, b=b, rows=rows)


@bp.post("/explorer/search/credential")
def search_credential():
    """POST, not GET: a credential is a bearer token and must not end up in URLs and access logs."""
    up = request.files.get("file")
    data = up.read(model.MAX_CREDENTIAL + 1) if up is not None and up.filename else b""
    if not data:
        data = request.form.get("credential", "").encode("utf-8")
    res = model.credential_search(_svc(), data)
    return _page("search.html", kinds=model.SEARCH_KINDS, kind="rid", a="", b="", rows=None, cred=res)


@bp.get("/explorer/consistency")
def consistency():
    n, m = _uint("from"), _uint("to")
    c = model.consistency(_svc(), n, m) if n is not None and m is not None else None
    return _page("consistency.html", c=c, size=_svc().tree_size(), n=n, m=m)
