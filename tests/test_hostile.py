"""Issue 11: hostile registrants, readers and clients (the log's side).

Regression tests, each failing on the code before its fix: public URLs from the configured
base URL (item 8), rate limiting on by default (item 9), one claim one entry (item 1) and
byte-bounded paging of lookups."""

from __future__ import annotations

import cbor2

from .test_server import app, client, ed_issuer, issuer_key, make_app, pki, post, svc_of  # noqa: F401 - fixtures
from .test_server_support import statement


# ---- item 8: public URLs from the configured base URL, never from the Host header ------------
def test_configuration_urls_ignore_host_header(make_app, issuer_key):
    app = make_app(public_url="https://pub.example/log/")
    c = app.test_client()
    conf = cbor2.loads(c.get("/.well-known/transparency-configuration",
                             headers={"Host": "evil.example"}).data)
    for k in ("jwks_uri", "scitt_keys_uri", "registration_endpoint", "checkpoint_uri"):
        assert conf[k].startswith("https://pub.example/log/"), conf[k]
    r = post(c, statement(issuer_key, sub="host/1"), headers={"Host": "evil.example"})
    assert r.status_code == 201
    assert r.headers["Location"].startswith("/log/entries/")
    assert "evil" not in r.headers["Location"]


def test_configuration_default_base_is_the_issuer(client):
    conf = cbor2.loads(client.get("/.well-known/transparency-configuration",
                                  headers={"Host": "evil.example:666"}).data)
    assert conf["registration_endpoint"] == "https://test.example/entries"
