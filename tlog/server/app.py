"""SCRAPI over HTTP: request parsing, status codes and problem details. Logic is in tlog.service.

Routes (all errors: application/concise-problem-details+cbor {-1: title, -2: detail}):

    POST /entries                          register (201 + receipt, or 303 -> /entries/<id>)
    GET  /entries?iss=&sub= | ?statement-hash=<hex> | ?payload-hash=<hex> [&after=<index>&limit=<n>]
    GET  /entries/<id>                     receipt (200), 302/202 + Retry-After while pending
    GET  /entries/<id>/statement           transparent statement (statement + 394 receipt)
    GET  /entries/<id>/receipt?size=M      receipt at a later tree size
    GET  /.well-known/scitt-keys[/<kid>]   COSE_KeySet / COSE_Key (kid raw or base64url)
    GET  /.well-known/transparency-configuration, /jwks
    GET  /checkpoint, /tile/<L>/<N>[.p/<W>], /tile/entries/<N>[.p/<W>]
    GET  /consistency?from=N&to=M          RFC 9942 consistency receipt
    GET  /health, /metrics
    GET  /, /explorer/...                  HTML log explorer for browsers (tlog.explorer); "/" answers
                                           HTML only to clients whose Accept names text/html
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse

from werkzeug.routing import PathConverter
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from verifier import cbor as vcbor

from ..config import Config
from ..keys import kid_candidates
from ..policy import Rejection
from ..storage import StorageUnavailable
from ..attrs import ATTR_ISS, ATTR_ISS_SUB, ATTR_PAYLOAD_HASH, entry_id_of, iss_sub_key
from ..errors import BadRequest, NotFound, Unavailable
from ..service import LogService
from ..twi import TWI  # the personality this server composes (tlog.personality)
from .access import AccessLog
from .front import RegistrationFront
from .problems import problem
from .ratelimit import ClientLimits, RateLimiter

log = logging.getLogger("tlog.server")

COSE = "application/cose"
CBOR = "application/cbor"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=5"
NO_STORE = "no-store"
ACCEPTED_TYPES = (
    "application/cose",
    "application/scitt-statement+cose",
    "application/cose-sign1",
    "application/octet-stream",
)
_UINT = re.compile(r"^(0|[1-9][0-9]{0,18})$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _uint_param(name: str, *, required: bool = True) -> int | None:
    v = request.args.get(name)
    if v is None:
        if required:
            raise BadRequest("Malformed request", f"query parameter {name!r} is required")
        return None
    if not _UINT.match(v):
        raise BadRequest("Malformed request", f"query parameter {name!r} must be a decimal integer")
    return int(v)


def _read_body(limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 above), also for chunked requests
    (Werkzeug applies MAX_CONTENT_LENGTH to Content-Length only)."""
    from werkzeug.exceptions import RequestEntityTooLarge

    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    stream = request.stream
    parts, n = [], 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - n))
        if not chunk:
            break
        parts.append(chunk)
        n += len(chunk)
        if n > limit:
            raise RequestEntityTooLarge()
    return b"".join(parts)


class _AnyPathConverter(PathConverter):
    """Like ``path`` but any byte, newline included: a raw binary kid may percent-encode 0x0A."""

    regex = "[\\s\\S]+?"
    part_isolating = False  # may span "/" (werkzeug infers True from a regex without "/")


def _open_service(config: Config, integrator: str | None, wait: float = 20.0) -> LogService:
    """A worker's service; while the database is unavailable (a worker restarted during a
    PostgreSQL restart) it is retried for ``wait`` seconds instead of failing the worker's boot,
    which would make gunicorn stop the whole instance."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            return LogService(config, integrator=integrator, personality=TWI)
        except StorageUnavailable as e:
            if time.monotonic() > deadline:
                raise
            log.warning("the log's database is unavailable (%s); retrying the start", e)
            time.sleep(0.5)


def create_app(config: Config | None = None, *, service: LogService | None = None,
               integrator: str | None = None) -> Flask:
    """The Flask application. ``service`` may be given (tests); else one is opened from ``config``
    (``integrator``: see :class:`tlog.service.LogService`)."""
    config = config or Config.load()
    svc = service or _open_service(config, integrator)
    app = Flask("tlog.server")
    app.url_map.converters["anypath"] = _AnyPathConverter
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.extensions["tlog.service"] = svc
    from ..witnessing import attach as _attach_witnessing

    witnessing = _attach_witnessing(app, svc, config)  # None without configured witnesses
    limits = ClientLimits(config)
    pending_status = config.pending_status
    retry_after = str(max(1, config.retry_after))

    # ---- cross-cutting ------------------------------------------------------------------------
    @app.before_request
    def _rate_limit():
        client = request.remote_addr or "?"
        path = request.path
        if request.method == "POST" and path == "/entries":
            wait, why = limits.registration(client)
            if wait > 0:
                svc.metrics.rejected("rate-limit")
        elif request.method in ("GET", "HEAD"):
            lookup = (path == "/entries" and bool(request.args)) or path.startswith("/twi/")
            wait, why = limits.read(client, lookup, path.startswith("/entries"))
        else:
            return None
        if wait > 0:
            return problem(429, "Too Many Requests", why, retry_after=RateLimiter.retry_after_seconds(wait))
        return None

    @app.after_request
    def _count(resp: Response):
        svc.metrics.response(resp.status_code)
        if request.method == "POST" and request.path == "/entries":
            limits.answered(request.remote_addr or "?", resp.status_code)
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        if e.code == 413:
            svc.metrics.rejected("too-large")
            return problem(413, "Payload Too Large", f"request body larger than {config.max_body} bytes")
        if e.code == 405:
            allowed = getattr(e, "valid_methods", None)
            return problem(405, "Method Not Allowed", f"{request.method} is not allowed on {request.path}",
                           headers={"Allow": ", ".join(sorted(allowed))} if allowed else None)
        if e.code == 404:
            return problem(404, "Not Found", f"no resource at {request.path}")
        return problem(e.code or 500, None, e.description)

    @app.errorhandler(BadRequest)
    def _bad(e: BadRequest):
        return problem(400, e.title, e.detail)

    @app.errorhandler(NotFound)
    def _nf(e: NotFound):
        return problem(404, e.title, e.detail)

    @app.errorhandler(Unavailable)
    def _unavail(e: Unavailable):
        return problem(503, "Service Unavailable", e.detail, retry_after=max(1, e.retry_after))

    @app.errorhandler(StorageUnavailable)
    def _storage_unavail(e: StorageUnavailable):
        return problem(503, "Service Unavailable", "the log's database is unavailable; retry",
                       retry_after=max(1, config.retry_after))

    @app.errorhandler(Rejection)
    def _rejected(e: Rejection):
        return problem(e.status, e.title, e.detail, headers=getattr(e, "headers", None))

    @app.errorhandler(Exception)
    def _internal(e: Exception):
        log.exception("internal error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "the log could not complete the request", retry_after=1)

    # ---- registration -----------------------------------------------------------------------
    loc_prefix = config.location_prefix()  # from the configured public URL, never the Host header

    def _location(eid: str) -> str:
        return f"{loc_prefix}/entries/{eid}"

    @app.post("/entries")
    def register():
        ctype = (request.mimetype or "").lower()
        detached = None
        if ctype == "multipart/form-data":
            # detached payloads: parts "statement" (application/cose) and "payload"
            st_part = request.files.get("statement")
            if st_part is None:
                raise Rejection("Malformed request", "multipart registration needs a 'statement' part", "malformed")
            body = st_part.read()
            pl = request.files.get("payload")
            detached = pl.read() if pl is not None else None
        elif ctype in ACCEPTED_TYPES or ctype == "":
            body = _read_body(config.max_body)
        else:
            svc.metrics.rejected("media-type")
            return problem(415, "Unsupported Media Type", f"send application/cose (got {ctype!r})")
        reg = svc.register(body, detached_payload=detached)
        loc = _location(reg.entry_id)
        if reg.receipt is None:
            resp = Response(b"", status=303)
            resp.headers["Location"] = loc
            resp.headers["Retry-After"] = retry_after
            return resp
        resp = Response(reg.receipt, status=201, mimetype=COSE)
        resp.headers["Location"] = loc
        return resp

    # ---- entries -----------------------------------------------------------------------------
    def _integrated(entry_id: str):
        leaf, st = svc.resolve(entry_id)
        if st is None:
            raise NotFound("Not Found", f"Receipt with entry ID {entry_id} not known to this Transparency Service")
        return leaf, st

    def _pending(entry_id: str) -> Response:
        resp = Response(b"", status=pending_status)
        resp.headers["Location"] = _location(entry_id)
        resp.headers["Retry-After"] = retry_after
        resp.headers["Cache-Control"] = NO_STORE
        return resp

    @app.get("/entries/<entry_id>")
    def get_entry(entry_id: str):
        leaf, st = _integrated(entry_id)
        if st == "pending":
            return _pending(entry_id)
        resp = Response(svc.entry_receipt(st), status=200, mimetype=COSE)
        resp.headers["Location"] = _location(entry_id_of(leaf))
        resp.headers["Cache-Control"] = IMMUTABLE
        return resp

    @app.get("/entries/<entry_id>/statement")
    def get_statement(entry_id: str):
        leaf, st = _integrated(entry_id)
        if st == "pending":
            return _pending(entry_id)
        resp = Response(svc.transparent_statement(st), status=200, mimetype=COSE)
        resp.headers["Cache-Control"] = IMMUTABLE
        return resp

    @app.get("/entries/<entry_id>/receipt")
    def get_receipt(entry_id: str):
        size = _uint_param("size", required=False)
        leaf, st = _integrated(entry_id)
        if st == "pending":
            return _pending(entry_id)
        resp = Response(svc.entry_receipt(st, size), status=200, mimetype=COSE)
        resp.headers["Cache-Control"] = IMMUTABLE if size is not None else SHORT
        return resp

    @app.get("/entries")
    def lookup():
        args = request.args
        after = _uint_param("after", required=False)
        limit = _uint_param("limit", required=False)
        if limit is not None and limit == 0:
            raise BadRequest("Malformed request", "limit must be positive")
        after_i = -1 if after is None else after
        if "statement-hash" in args:
            h = args["statement-hash"]
            if not _HEX64.match(h):
                raise BadRequest("Malformed request", "statement-hash must be 64 hex digits (SHA-256)")
            leaf, st = svc.resolve(h.lower())
            found = [] if st in (None, "pending") else [st.index]
            found = [i for i in found if i > after_i]
        elif "payload-hash" in args:
            h = args["payload-hash"]
            if not _HEX64.match(h):
                raise BadRequest("Malformed request", "payload-hash must be 64 hex digits (SHA-256)")
            found = svc.lookup(ATTR_PAYLOAD_HASH, h.lower(), after=after_i, limit=limit)
        elif "iss" in args:
            iss = args["iss"]
            sub = args.get("sub")
            if not iss or (sub is not None and not sub):
                raise BadRequest("Malformed request", "iss and sub must not be empty")
            if sub is None:
                found = svc.lookup(ATTR_ISS, iss, after=after_i, limit=limit)
            else:
                found = svc.lookup(ATTR_ISS_SUB, iss_sub_key(iss, sub), after=after_i, limit=limit)
        else:
            raise BadRequest("Malformed request", "give iss[&sub], statement-hash or payload-hash")
        entries = [{"id": entry_id_of(svc.log.leaf_input(i)), "index": i} for i in found]
        body = {"entries": entries}
        if found and len(found) >= min(limit or svc.config.lookup_limit, svc.config.lookup_limit):
            body["next"] = found[-1]
        return Response(vcbor.dumps(body), mimetype=CBOR)

    # ---- keys and configuration ---------------------------------------------------------------
    @app.get("/.well-known/scitt-keys")
    def scitt_keys():
        resp = Response(svc.keys.keyset_bytes(), mimetype=CBOR)
        resp.headers["Cache-Control"] = SHORT
        return resp

    @app.get("/.well-known/scitt-keys/<anypath:kid>")
    def scitt_key(kid: str):
        cands = kid_candidates(kid)
        # a raw binary kid, percent-encoded: decode it from the request URI as sent
        raw = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?", 1)[0]
        prefix = "/.well-known/scitt-keys/"
        if raw.startswith(prefix):
            cands.append(urllib.parse.unquote_to_bytes(raw[len(prefix):]))
        # WSGI PATH_INFO is the percent-decoded path as latin-1: the raw kid bytes, whatever
        # they are (the UTF-8 decoded route value loses bytes that are not UTF-8)
        path_info = request.environ.get("PATH_INFO", "")
        if path_info.startswith(prefix):
            try:
                cands.append(path_info[len(prefix):].encode("latin-1"))
            except UnicodeEncodeError:
                pass
        for cand in cands:
            k = svc.keys.find(cand)
            if k is not None:
                return Response(vcbor.dumps(k), mimetype=CBOR)
        return problem(404, "No such key", "No key could be found for this kid value")

    @app.get("/.well-known/transparency-configuration")
    def transparency_configuration():
        # CBOR by default (SCRAPI); JSON when the client prefers it (Accept: application/json)
        if request.accept_mimetypes.best_match([CBOR, "application/json"], default=CBOR) == "application/json":
            resp = Response(json.dumps(svc.transparency_configuration_obj()),
                            mimetype="application/json")
        else:
            resp = Response(svc.transparency_configuration(), mimetype=CBOR)
        resp.headers["Vary"] = "Accept"
        return resp

    @app.get("/jwks")
    def jwks():
        return Response(json.dumps(svc.jwks()), mimetype="application/jwk-set+json")

    # ---- C2SP checkpoint and tiles --------------------------------------------------------------
    @app.get("/checkpoint")
    def checkpoint():
        if witnessing is not None:
            text = witnessing.served_note()  # signed note + cosignatures, under the witness policy
        else:
            head = svc.latest()
            text = head.checkpoint if isinstance(head.checkpoint, str) else head.checkpoint.decode()
        resp = Response(text, mimetype="text/plain")
        resp.headers["Content-Type"] = "text/plain; charset=utf-8"
        resp.headers["Cache-Control"] = "public, max-age=1"
        return resp

    @app.get("/tile/<path:rest>")
    def tile(rest: str):
        from tlog.layout import parse_tile_path

        try:
            parsed = parse_tile_path("tile/" + rest)
        except Exception:  # noqa: BLE001 - any parse failure is a malformed path
            raise BadRequest("Malformed request", f"not a tile path: /tile/{rest}") from None
        size = svc.tree_size()
        if parsed.level is None:
            data = svc.log.entry_bundle(parsed.index, parsed.width)
        else:
            data = svc.log.tile(parsed.level, parsed.index, parsed.width)
        if not data:
            raise NotFound("Not Found", f"tile /tile/{rest} does not exist at tree size {size}")
        resp = Response(data, mimetype="application/octet-stream")
        resp.headers["Cache-Control"] = SHORT if parsed.is_partial else IMMUTABLE
        return resp

    # ---- consistency -------------------------------------------------------------------------
    @app.get("/consistency")
    def consistency():
        n = _uint_param("from")
        m = _uint_param("to")
        resp = Response(svc.consistency_receipt(n, m), mimetype=COSE)
        resp.headers["Cache-Control"] = IMMUTABLE
        return resp

    # ---- TWI Credential Provenance lookup (GET /twi/v1/cpr, tlog.twi.routes) ------------
    from tlog.twi.routes import bp as twi_bp

    app.register_blueprint(twi_bp)

    # ---- the log explorer (HTML for people, tlog.explorer); "/" by content negotiation --------
    from tlog import explorer

    app.register_blueprint(explorer.bp)

    @app.get("/")
    def index():
        if explorer.wants_html():
            resp = explorer.overview()
        else:  # API clients (CBOR, JSON, */*) get the answer they always got
            resp = problem(404, "Not Found", f"no resource at {request.path}")
        resp.headers["Vary"] = "Accept"
        return resp

    # ---- operations --------------------------------------------------------------------------
    @app.get("/health")
    def health():
        ok, body = svc.health()  # 503 "degraded" when the checkpoint or the witness quorum lags
        resp = Response(json.dumps(body), status=200 if ok else 503, mimetype="application/json")
        resp.headers["Cache-Control"] = NO_STORE
        return resp

    @app.get("/metrics")
    def metrics():
        return Response(svc.metrics_text(), mimetype="text/plain; version=0.0.4")

    # the common registration request is answered in front of Flask (tlog.server.front)
    front = RegistrationFront(app.wsgi_app, svc, max_body=config.max_body, limits=limits,
                              retry_after=retry_after, location_prefix=loc_prefix)
    front.observe = svc.metrics.request_seconds  # for its event-loop way (RegistrationFront.rsgi)
    app.extensions["tlog.front"] = front
    app.wsgi_app = front
    # outermost: request id (X-Request-Id in and out) and one access record per request
    app.wsgi_app = AccessLog(app.wsgi_app, observe=svc.metrics.request_seconds)
    return app
