"""RFC 9290 Concise Problem Details, the body of every 4xx/5xx answer (SCRAPI -10 section 2)."""

from __future__ import annotations

from flask import Response

from verifier import cbor as vcbor

MEDIA_TYPE = "application/concise-problem-details+cbor"

# Titles: SCRAPI -10 where it defines one, the HTTP reason phrase otherwise.
TITLES = {
    400: "Malformed request",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    411: "Length Required",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_body(title: str, detail: str | None = None) -> bytes:
    body = {-1: title}
    if detail:
        body[-2] = detail
    return vcbor.dumps(body)


def problem(status: int, title: str | None = None, detail: str | None = None, *, retry_after: int | None = None,
            headers: dict | None = None) -> Response:
    title = title or TITLES.get(status, "Error")
    resp = Response(problem_body(title, detail), status=status, mimetype=MEDIA_TYPE)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(int(retry_after))
    if headers:
        resp.headers.update(headers)
    return resp
