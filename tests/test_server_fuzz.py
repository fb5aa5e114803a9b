"""Property test: mutated statements never cause a 5xx or a silent append."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from tlog.config import Config
from tlog.server import create_app

from .test_server_support import bound, bound_arg, statement, write_public

KEY = ec.generate_private_key(ec.SECP256R1())
GOOD = statement(KEY, sub="fuzz", payload=b'{"fuzz": true}')


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    app = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(d / "data"), issuer_keys=[bound(write_public(d / "k.pem", KEY))],
        max_statement_size=4096, max_body=8192, register_wait=5.0,
        refusal_rate=0)))  # thousands of refused registrations from one client on purpose
    yield app
    app.extensions["tlog.service"].close()


mutation = hs.one_of(
    hs.tuples(hs.just("flip"), hs.integers(0, len(GOOD) - 1), hs.integers(1, 255)),
    hs.tuples(hs.just("cut"), hs.integers(0, len(GOOD) - 1), hs.just(0)),
    hs.tuples(hs.just("insert"), hs.integers(0, len(GOOD)), hs.integers(0, 255)),
    hs.tuples(hs.just("delete"), hs.integers(0, len(GOOD) - 1), hs.just(0)),
)


def apply(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        pos = min(pos, len(b))
        if kind == "flip" and pos < len(b):
            b[pos] ^= val
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([val])
        elif kind == "delete" and pos < len(b):
            del b[pos]
    return bytes(b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hs.lists(mutation, min_size=1, max_size=4))
def test_mutated_statements(fuzz_app, muts):
    svc = fuzz_app.extensions["tlog.service"]
    client = fuzz_app.test_client()
    body = apply(GOOD, muts)
    size0 = svc.tree_size()
    r = client.post("/entries", data=body, content_type="application/cose")
    assert r.status_code in (201, 400, 413), (r.status_code, r.data[:200])
    if r.status_code == 201:
        # only something that still parses and verifies may be appended
        st = SignedStatement.parse(body)
        st.verify(KEY.public_key())
        vreceipt.verify_inclusion_receipt(r.data, st.leaf_input, svc.keys.public_keys())
    else:
        assert r.mimetype == "application/concise-problem-details+cbor"
        assert isinstance(cbor2.loads(r.data)[-1], str)
        assert svc.tree_size() == size0
