"""The log explorer's pages (tlog.explorer) with the Flask test client on a real log with entries."""

from __future__ import annotations

import html
import re

import pytest

from tlog.explorer import model
from tlog.server.problems import problem_body
from verifier import cbor as vcbor
from verifier import merkle

from .explorer_support import ISS, build


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build(tmp_path_factory.mktemp("explorer"))
    yield w
    w.server.stop()


def get(world, url, **kw):
    r = world.server.client.get(url, **kw)
    return r, r.get_data(as_text=True) if r.mimetype == "text/html" else r.data


def test_root_negotiates_html_for_browsers_and_keeps_the_api_answer(world):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r, body = get(world, "/", headers={"Accept": browser})
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "explorer.test/log" in body and r.headers["Vary"] == "Accept"
    for accept in (None, "*/*", "application/cbor", "application/json", "application/cbor, */*;q=0.1"):
        r, body = get(world, "/", headers={"Accept": accept} if accept else {})
        assert r.status_code == 404, accept
        assert r.mimetype == "application/concise-problem-details+cbor"
        assert body == problem_body("Not Found", "no resource at /")
    # the API routes answer as before, whatever a browser asks
    r, _ = get(world, "/entries/" + world.ids["wit"], headers={"Accept": browser})
    assert r.status_code == 200 and r.mimetype == "application/cose"


def test_overview(world):
    r, body = get(world, "/explorer/")
    assert r.status_code == 200
    size = world.server.svc.tree_size()
    assert f'<dd id="tree-size">{size}</dd>' in body
    assert html.escape(world.server.checkpoint().split("\n")[0]) in body  # the note's origin line
    assert "not configured with witnesses" in body
    assert "<meter" in body  # registration-rate chart
    assert "Content-Security-Policy" in r.headers and "default-src 'none'" in r.headers["Content-Security-Policy"]


def test_rate_chart_buckets_span_the_entries(monkeypatch):
    class Log:
        def __init__(self, iats):
            self.iats = iats

        def entry_data(self, i):
            return self.iats[i]

    class Svc:
        log = Log([])

    def parse(iat):
        return type("S", (), {"cwt_claims": {6: iat}})()

    monkeypatch.setattr(model.SignedStatement, "parse", staticmethod(parse))
    for iats in ([5, 5, 5], [0, 1, 2, 100], list(range(1000, 1500, 7)), [3, 10**9]):
        Svc.log = Log(iats)
        rate = model.registration_rate(Svc, len(iats))
        assert sum(c for _, c in rate) == len(iats) and rate[0][1] > 0 and rate[-1][1] > 0, (iats, rate)
        assert 1 <= len(rate) <= 24


def _rows(body: str) -> list[int]:
    return [int(x) for x in re.findall(r"<tr><td>(\d+)</td>", body)]


def test_entries_newest_first_and_paged_without_javascript(world, monkeypatch):
    monkeypatch.setattr(model, "PAGE", 3)
    size = world.server.svc.tree_size()
    r, body = get(world, "/explorer/entries")
    assert r.status_code == 200 and "<script" not in body
    assert _rows(body) == [size - 1, size - 2, size - 3]
    older = re.search(r'rel="next" href="([^"]+)"', body).group(1)
    r, body = get(world, html.unescape(older))
    assert _rows(body) == [size - 4, size - 5, size - 6]
    assert 'rel="prev"' in body
    seen = []
    url = "/explorer/entries"
    while url:
        _, body = get(world, url)
        seen += _rows(body)
        m = re.search(r'rel="next" href="([^"]+)"', body)
        url = html.unescape(m.group(1)) if m else None
    assert seen == list(range(size - 1, -1, -1))
    assert "https://issuer.explorer.test" in body or ISS in get(world, "/explorer/entries")[1]
    r, body = get(world, "/explorer/entries?before=x")
    assert r.status_code == 400 and r.mimetype == "text/html"


def test_entry_page_hands_the_browser_the_raw_bytes(world):
    svc = world.server.svc
    eid = world.ids["wit"]
    r, body = get(world, f"/explorer/entries/{eid}")
    assert r.status_code == 200
    index = svc.log.find(bytes.fromhex(eid))
    assert f'id="entry-id">{eid}<' in body
    stmt_hex = re.search(r'id="statement-hex"[^>]*>([0-9a-f]+)<', body).group(1)
    receipt_hex = re.search(r'id="receipt-hex"[^>]*>([0-9a-f]+)<', body).group(1)
    assert bytes.fromhex(stmt_hex) == svc.log.entry_data(index)
    assert bytes.fromhex(receipt_hex) == world.server.client.get(f"/entries/{eid}").data
    # the drawn path is the receipt's, with the sides of RFC 9162 2.1.3.2
    from verifier.receipt import Receipt

    size, idx, path = Receipt.parse(bytes.fromhex(receipt_hex)).proofs(-1)[0]
    drawn = re.findall(r"Proof node on the <strong>(left|right)</strong>: <span class=\"hex\">([0-9a-f]{64})<", body)
    assert [h for _, h in drawn] == [p.hex() for p in path]
    # the sides drawn are the ones that recompute the root
    node = merkle.leaf_hash(bytes.fromhex(eid))
    for side, h in drawn:
        node = merkle.node_hash(bytes.fromhex(h), node) if side == "left" else merkle.node_hash(node, bytes.fromhex(h))
    assert node == svc.log.root(size)
    # decoded for people: header, CPR fields, downloads, published key with its thumbprint
    assert "rid-wit-1" in body and "jti-1" in body and "application/vnd.twi.cpr+cbor" in body
    assert f'href="/entries/{eid}/statement"' in body
    jwk = svc.jwks()["keys"][0]
    assert html.escape(jwk["x"]) in body
    assert svc.keys.receipt.kid.hex() in body  # the kid is the RFC 9679 thumbprint
    assert re.search(r'<script src="/explorer/static/explorer.js"', body)
    assert not re.search(r'(src|href)="(https?:)?//', body)  # nothing from other hosts


def test_inclusion_sides_recompute_roots_for_every_leaf():
    leaves = [merkle.leaf_hash(bytes([i]) * 32) for i in range(13)]  # leaf hashes
    for size in range(1, 14):
        root = merkle.root_of(leaves[:size])
        for index in range(size):
            path = _path(leaves[:size], index)
            node = leaves[index]
            for side, h in zip(model.inclusion_sides(index, size, len(path)), path):
                node = merkle.node_hash(h, node) if side == "left" else merkle.node_hash(node, h)
            assert node == root, (index, size)


def _path(leaves, m):  # RFC 9162 2.1.3.1 PATH(m, D[n])
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return _path(leaves[:k], m) + [merkle.root_of(leaves[k:])]
    return _path(leaves[k:], m - k) + [merkle.root_of(leaves[:k])]


def test_private_record_is_shown_as_a_hash_envelope(world):
    r, body = get(world, f"/explorer/entries/{world.ids['private']}")
    assert r.status_code == 200
    assert "hash envelope" in body and "hash of the private record" in body
    assert "jti-private" not in body  # the log never saw the record's identifiers


def test_entry_errors_are_pages(world):
    r, body = get(world, "/explorer/entries/" + "ab" * 32)
    assert r.status_code == 404 and r.mimetype == "text/html" and "no entry" in body
    r, body = get(world, "/explorer/entries/zz")
    assert r.status_code == 400 and r.mimetype == "text/html"


@pytest.mark.parametrize("query,expect", [
    ("kind=rid&a=rid-wit-1", "wit"),
    ("kind=iss_jti&a=https://wit.explorer.test&b=jti-1", "wit"),
    ("kind=dn_serial&a=CN%3DExplorer+CA,O%3DTest&b=0x00A1B2", "x509"),
    ("kind=sha256&a={sha}", "wit"),
    ("kind=iss_sub&a=https://issuer.explorer.test&b=spiffe://explorer.test/db", "x509"),
    ("kind=entry&a={wit}", "wit"),
    ("kind=rid&a=rid-private-1", "private"),
])
def test_search_by_each_key(world, query, expect):
    q = query.format(sha=world.wit_sha256.upper(), wit=world.ids["wit"])
    r, body = get(world, "/explorer/search?" + q)
    assert r.status_code == 200
    ids = re.findall(r'href="/explorer/entries/([0-9a-f]{64})"', body)
    assert ids == [world.ids[expect]], (query, ids)


def test_search_by_iss_finds_all_of_an_issuers_entries(world):
    r, body = get(world, "/explorer/search?kind=iss_sub&a=" + ISS)
    assert set(re.findall(r'href="/explorer/entries/([0-9a-f]{64})"', body)) == set(world.ids.values())


@pytest.mark.parametrize("query", ["kind=sha256&a=abc", "kind=iss_jti&a=x", "kind=dn_serial&a=CN%3Dx&b=zz",
                                   "kind=nope&a=x", "kind=rid&a=", "kind=entry&a=-1"])
def test_search_refuses_malformed_queries(world, query):
    r, body = get(world, "/explorer/search?" + query)
    assert r.status_code == 400 and r.mimetype == "text/html"


def test_search_without_match_and_the_empty_form(world):
    r, body = get(world, "/explorer/search?kind=rid&a=no-such-record")
    assert r.status_code == 200 and "No entry matches" in body
    r, body = get(world, "/explorer/search")
    assert r.status_code == 200 and "<form" in body and "Results" not in body


def test_consistency_nodes_prove_the_roots(world):
    svc = world.server.svc
    size = svc.tree_size()
    r, body = get(world, f"/explorer/consistency?from=3&to={size}")
    assert r.status_code == 200
    nodes = [bytes.fromhex(h) for h in re.findall(r'<li class="hex">([0-9a-f]{64})</li>', body)]
    assert nodes and nodes == svc.log.consistency_proof(3, size)
    merkle.verify_consistency(3, size, nodes, svc.log.root(3), svc.log.root(size))
    assert svc.log.root(3).hex() in body and svc.log.root(size).hex() in body
    for bad in ("from=0&to=2", f"from=2&to={size + 1}", "from=5&to=3", "from=a&to=3"):
        r, _ = get(world, "/explorer/consistency?" + bad)
        assert r.status_code == 400, bad
    r, body = get(world, "/explorer/consistency")
    assert r.status_code == 200 and "<form" in body


def test_static_assets_are_served(world):
    for name, mime in (("explorer.js", "text/javascript"), ("explorer.css", "text/css")):
        r = world.server.client.get(f"/explorer/static/{name}")
        assert r.status_code == 200 and r.mimetype == mime, (name, r.mimetype)
        r.close()


def _found(body: str) -> list[str]:
    return re.findall(r'href="/explorer/entries/([0-9a-f]{64})"', body)


def test_search_by_pasted_or_uploaded_credential(world):
    from .explorer_support import make_wit

    c = world.server.client
    r = c.post("/explorer/search/credential", data={"credential": world.wit})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and _found(body) == [world.ids["wit"]], body
    assert world.wit_sha256 in body and "jti-1" in body and "No status statement" in body
    import io

    r = c.post("/explorer/search/credential", data={"file": (io.BytesIO(world.wit.encode()), "cred.jwt")},
               content_type="multipart/form-data")
    assert _found(r.get_data(as_text=True)) == [world.ids["wit"]]
    # another WIT with the same (iss, jti): found by (iss, jti), not by its digest
    other = make_wit(world.server.svc.keys.receipt.private)
    r = c.post("/explorer/search/credential", data={"credential": other})
    assert _found(r.get_data(as_text=True)) == [world.ids["wit"]]
    other = make_wit(world.server.svc.keys.receipt.private, jti="jti-unknown")
    r = c.post("/explorer/search/credential", data={"credential": other})
    assert r.status_code == 200 and _found(r.get_data(as_text=True)) == []
    assert "No provenance record" in r.get_data(as_text=True)
    for bad in ("", "not a credential", "eyJhbGciOiJub25lIn0.e30."):
        r = c.post("/explorer/search/credential", data={"credential": bad})
        assert r.status_code == 400 and r.mimetype == "text/html", bad
    # an X.509 SVID (DER upload) whose record was revoked: the record and its status statement
    r = c.post("/explorer/search/credential", data={"file": (io.BytesIO(world.x509_der), "svid.der")},
               content_type="multipart/form-data")
    body = r.get_data(as_text=True)
    assert r.status_code == 200, body
    assert _found(body) == [world.ids["x509"], world.ids["revocation"]], body
    assert "Status statements (revocations)" in body
    r = c.get("/explorer/search/credential")  # never in a URL
    assert r.status_code == 405
