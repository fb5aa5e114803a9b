"""How the issuer's SCRAPI client words a log's refusal (issuer/client.py, issue 16): concise
problem details (RFC 9290, CBOR) are read only when the response says it carries them and only
when they are a map; anything else is shown as text."""

from __future__ import annotations

import cbor2
import requests

from issuer.client import _problem

PD = "application/concise-problem-details+cbor"


def _resp(body: bytes, ctype: str = PD, reason: str = "Bad Request") -> requests.Response:
    r = requests.Response()
    r.status_code, r.reason, r._content = 400, reason, body
    r.headers["Content-Type"] = ctype
    r.encoding = "utf-8"
    return r


def test_problem_details_title_and_detail():
    assert _problem(_resp(cbor2.dumps({-1: "Bad Signature", -2: "the kid names no key"}))) == \
        "Bad Signature - the kid names no key"
    assert _problem(_resp(cbor2.dumps({-2: "only a detail"}))) == "only a detail"


def test_problem_details_without_title_or_detail_shown_whole():
    assert _problem(_resp(cbor2.dumps({-3: "https://example/type"}))) == repr({-3: "https://example/type"})


def test_problem_details_that_are_not_a_map_shown_as_text():
    body = cbor2.dumps(["Bad Signature", "detail"])
    assert _problem(_resp(body)) == body.decode("utf-8", "replace")[:200]


def test_cbor_body_without_the_problem_details_type_not_decoded():
    body = cbor2.dumps({-1: "T", -2: "D"})
    assert _problem(_resp(body, "application/octet-stream")) == body.decode("utf-8", "replace")[:200]
    assert _problem(_resp(b"", PD)) == "Bad Request"
    assert _problem(_resp(b"not cbor at all", PD)) == "not cbor at all"
