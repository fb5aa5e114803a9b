"""Guards of the SCRAPI client (verifier/scrapi.py) that survived mutation testing (issue 16):
each test fails when the check it names is changed (tried by hand; `tools/mutate.py` re-checks
them). A scripted in-memory session stands in for the log and a fake clock for time: no
network, no real sleeps."""

from __future__ import annotations

import types

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from verifier import cbor as vcbor
from verifier import scrapi
from verifier.scrapi import ScrapiClient, ScrapiError, _retry_after, successor_of

from .test_receipt_support import signed_statement

BASE = "https://log.test"


def answer(status: int, body: bytes = b"", headers: dict | None = None, url: str = "") -> requests.Response:
    r = requests.Response()
    r.status_code, r._content, r.url = status, body, url
    r.headers = CaseInsensitiveDict(headers or {})
    r.reason = "test"
    return r


class Script:
    """A session answering from a list of (status, body, headers); the last one repeats. Refuses
    to answer more than ``limit`` requests (a client that never stops fails instead of hanging)."""

    def __init__(self, *answers, limit: int = 50):
        self.answers, self.limit, self.calls = list(answers), limit, []

    def request(self, method, url, **kw):
        self.calls.append((method, url))
        if len(self.calls) > self.limit:
            raise RuntimeError(f"client did not stop after {self.limit} requests")
        status, body, headers = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return answer(status, body, headers, url)


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock that only the client's sleep advances."""
    c = types.SimpleNamespace(now=1000.0, sleeps=[])

    def sleep(s):
        c.sleeps.append(s)
        c.now += s

    c.sleep = sleep
    import time as _time
    monkeypatch.setattr(scrapi, "time", types.SimpleNamespace(monotonic=lambda: c.now, time=_time.time,
                                                               sleep=sleep))
    return c


def refused(check, fn, *a, **kw):
    with pytest.raises(ScrapiError) as ei:
        fn(*a, **kw)
    assert ei.value.check == check, str(ei.value)
    return ei.value


LIST = vcbor.dumps([b"ts1", b"ts2"])


# -- Retry-After and retries

def test_retry_after_parsing():
    assert _retry_after(None) is None
    assert _retry_after(answer(503)) is None
    assert _retry_after(answer(503, headers={"Retry-After": "3"})) == 3.0
    assert _retry_after(answer(503, headers={"Retry-After": "-5"})) == 0.0
    assert _retry_after(answer(503, headers={"Retry-After": "soon"})) is None
    assert _retry_after(answer(503, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"})) == 0.0


def test_retry_without_retry_after_backs_off(clock):
    """A 503 without Retry-After is retried after the exponential backoff (with jitter)."""
    s = Script((503, b"", {}), (200, LIST, {}))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep, backoff=0.2, max_backoff=5.0)
    assert c.lookup(sub="x") == [b"ts1", b"ts2"]
    assert len(s.calls) == 2
    assert len(clock.sleeps) == 1 and 0.1 <= clock.sleeps[0] <= 0.2


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_500_and_above_and_429_are_retried(clock, status):
    s = Script((status, b"", {"Retry-After": "1"}), (200, LIST, {}))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep)
    assert c.lookup(sub="x") == [b"ts1", b"ts2"]
    assert len(s.calls) == 2 and clock.sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 403, 499])
def test_4xx_is_final(clock, status):
    s = Script((status, b"", {"Retry-After": "1"}), (200, LIST, {}))
    refused("client.lookup", ScrapiClient(BASE, session=s, sleep=clock.sleep).lookup, sub="x")
    assert len(s.calls) == 1 and clock.sleeps == []


def test_retries_stop_at_max_attempts(clock):
    s = Script((503, b"", {"Retry-After": "1"}))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep, max_attempts=3, deadline=1e6)
    refused("client.unavailable", c.lookup, sub="x")
    assert len(s.calls) == 3 and clock.sleeps == [1.0, 1.0]


def test_retries_stop_at_the_deadline(clock):
    """Many attempts allowed, but no retry whose wait would end past the deadline."""
    s = Script((503, b"", {"Retry-After": "1"}), limit=100)
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep, max_attempts=1000, deadline=3.5)
    t0 = clock.now
    refused("client.unavailable", c.lookup, sub="x")
    assert len(s.calls) == 4 and clock.now - t0 == 3.0


def test_connection_errors_stop_at_the_deadline(clock):
    class Down:
        calls = 0

        def request(self, method, url, **kw):
            Down.calls += 1
            if Down.calls > 100:
                raise RuntimeError("client did not stop")
            raise requests.ConnectionError("refused")

    c = ScrapiClient(BASE, session=Down(), sleep=clock.sleep, max_attempts=1000, deadline=2.0, backoff=0.5,
                     max_backoff=0.5)
    t0 = clock.now
    refused("client.unavailable", c.lookup, sub="x")
    assert clock.now - t0 <= 2.0 and Down.calls < 10


# -- lookup

def test_lookup_404_is_none_found(clock):
    assert ScrapiClient(BASE, session=Script((404, b"", {})), sleep=clock.sleep).lookup(sub="x") == []


@pytest.mark.parametrize("status", [201, 202, 204, 302, 303])
def test_lookup_takes_statements_only_from_a_200(clock, status):
    """A well-formed array in the body of another answer is not the log's answer."""
    s = Script((status, LIST, {"Location": "/twi/v1/cpr"}))
    refused("client.lookup", ScrapiClient(BASE, session=s, sleep=clock.sleep).lookup, sub="x")


@pytest.mark.parametrize("value", [
    b"", b"ts", "", {}, {b"ts": b"x"}, 7,        # not an array (some iterate as if they were)
    [b"ok", 7], [b"ok", "text"], [[b"nested"]],   # an array of something other than byte strings
])
def test_lookup_answer_must_be_an_array_of_byte_strings(clock, value):
    s = Script((200, vcbor.dumps(value), {}))
    refused("client.lookup", ScrapiClient(BASE, session=s, sleep=clock.sleep).lookup, sub="x")


def test_lookup_empty_array(clock):
    assert ScrapiClient(BASE, session=Script((200, vcbor.dumps([]), {})), sleep=clock.sleep).lookup(sub="x") == []


# -- statement

@pytest.mark.parametrize("url", ["https://evil.test/entries/ab", "https://log.test.evil/entries/ab",
                                 "https://log.test/other/ab", "http://log.test/entries/ab", "https://log.test/entries"])
def test_statement_refuses_an_entry_of_another_log(clock, url):
    s = Script((200, b"statement", {}))
    refused("client.entry", ScrapiClient(BASE + "/", session=s, sleep=clock.sleep).statement, url)
    assert s.calls == []


def test_statement_of_an_entry(clock):
    s = Script((200, b"statement", {}))
    assert ScrapiClient(BASE, session=s, sleep=clock.sleep).statement(BASE + "/entries/ab") == b"statement"
    assert s.calls == [("GET", BASE + "/entries/ab/statement")]


@pytest.mark.parametrize("status", [202, 302, 404, 410])
def test_statement_only_from_a_200(clock, status):
    s = Script((status, b"statement", {"Location": BASE + "/entries/ab/statement"}))
    refused("client.entry", ScrapiClient(BASE, session=s, sleep=clock.sleep).statement, BASE + "/entries/ab")


# -- register

@pytest.mark.parametrize("status", [202, 302, 303])
def test_pending_answer_without_location(clock, status):
    s = Script((status, b"", {"Retry-After": "1"}), (404, b"", {}))
    refused("client.protocol", ScrapiClient(BASE, session=s, sleep=clock.sleep).register, signed_statement())
    assert len(s.calls) == 1 and clock.sleeps == []


def test_polling_stops_at_the_deadline(clock):
    s = Script((303, b"", {"Location": "/entries/ab", "Retry-After": "1"}), (202, b"", {"Retry-After": "1"}),
               limit=100)
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep, deadline=3.5)
    t0 = clock.now
    refused("client.timeout", c.register, signed_statement())
    assert clock.now - t0 == 3.0 and len(s.calls) == 4
    assert s.calls[1:] == [("GET", BASE + "/entries/ab")] * 3


@pytest.mark.parametrize("status", [400, 409, 415, 499])
def test_register_4xx_is_a_rejection(clock, status):
    s = Script((status, b"", {}))
    refused("client.rejected", ScrapiClient(BASE, session=s, sleep=clock.sleep).register, signed_statement())


# -- successor_of (RFC 5829 successor-version in a 410 answer)

def _succ(target: str):
    return successor_of(answer(410, headers={"Link": f'<{target}>; rel="successor-version"'}))


def test_successor_of_takes_http_urls():
    assert _succ("https://log2.test/") == "https://log2.test"
    assert _succ("http://log2.test:8080/shard/2") == "http://log2.test:8080/shard/2"
    assert successor_of(answer(410)) is None
    assert successor_of(answer(410, headers={"Link": '<https://x.test>; rel="next"'})) is None


@pytest.mark.parametrize("target", [
    "ftp://log2.test/", "file:///etc/passwd", "javascript://log2.test/", "log2.test/shard",  # not http(s)
    "https:///shard", "http://",                                                          # no host
    "https://log2.test/?a=1", "https://log2.test/shard?x",                                # a query
    "https://log2.test/#frag", "https://log2.test/shard#x",                               # a fragment
])
def test_successor_of_refuses(target):
    assert _succ(target) is None


def test_register_does_not_follow_an_ftp_successor(clock):
    s = Script((410, b"", {"Link": '<ftp://log2.test>; rel="successor-version"'}), (201, b"", {}))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep)
    refused("client.rejected", c.register, signed_statement())
    assert len(s.calls) == 1 and c.base == BASE


# -- _finish: the receipt verified with pinned keys, or with the log's keys (fetched, cached,
#    fetched once more when a cached key no longer verifies: the log may have rotated its key)

class LogSession:
    """POST /entries answers 201 with the next scripted receipt; the key set is the current one."""

    def __init__(self, keyset: bytes):
        self.keyset, self.receipts, self.calls = keyset, [], []

    def request(self, method, url, **kw):
        self.calls.append((method, url))
        if len(self.calls) > 50:
            raise RuntimeError("client did not stop")
        if method == "POST" and url == BASE + "/entries":
            return answer(201, self.receipts.pop(0), {}, url)
        if method == "GET" and url == BASE + "/.well-known/scitt-keys":
            return answer(200, self.keyset, {}, url)
        return answer(404, b"", {}, url)

    def key_fetches(self) -> int:
        return sum(1 for _, u in self.calls if u.endswith("/.well-known/scitt-keys"))


def _logs():
    from .test_receipt_support import Log, key

    a, b = Log(3, key("p256", 2)), Log(3, key("p256", 3))
    b.statements, b.leaf_inputs, b.leaf_hashes = a.statements, a.leaf_inputs, a.leaf_hashes
    return a, b


def _keyset(log) -> bytes:
    from verifier import keys as vkeys

    return vkeys.encode_keyset([vkeys.cose_key_from_public(log.public)])


def test_fetched_keys_are_cached_and_fetched_again_after_a_rotation(clock):
    a, b = _logs()
    s = LogSession(_keyset(a))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep)
    s.receipts.append(a.inclusion_receipt(0))
    assert c.register(a.statements[0]).index == 0
    s.receipts.append(a.inclusion_receipt(1))
    assert c.register(a.statements[1]).index == 1
    assert s.key_fetches() == 1                       # cached
    s.keyset = _keyset(b)                             # the log rotates its key
    s.receipts.append(b.inclusion_receipt(2))
    assert c.register(b.statements[2]).index == 2
    assert s.key_fetches() == 2


def test_fetched_keys_refuse_a_bad_receipt_after_one_more_fetch(clock):
    a, _ = _logs()
    s = LogSession(_keyset(a))
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep)
    s.receipts.append(a.inclusion_receipt(0))
    c.register(a.statements[0])
    s.receipts.append(a.inclusion_receipt(0))         # the receipt of another entry
    refused("client.receipt", c.register, a.statements[1])
    assert s.key_fetches() == 2
    s.receipts.append(a.inclusion_receipt(2))         # the keys are fetched again, then cached
    assert c.register(a.statements[2]).index == 2
    assert s.key_fetches() == 3


def test_a_first_bad_receipt_is_refused_after_one_fetch(clock):
    a, b = _logs()
    s = LogSession(_keyset(a))
    s.receipts.append(b.inclusion_receipt(0))
    refused("client.receipt", ScrapiClient(BASE, session=s, sleep=clock.sleep).register, a.statements[0])
    assert s.key_fetches() == 1


def test_pinned_keys_are_never_fetched(clock):
    a, b = _logs()
    s = LogSession(_keyset(b))                        # the log would serve another key
    c = ScrapiClient(BASE, session=s, sleep=clock.sleep, log_keys=a.keys())
    s.receipts.append(a.inclusion_receipt(0))
    assert c.register(a.statements[0]).index == 0
    s.receipts.append(b.inclusion_receipt(1))
    refused("client.receipt", c.register, a.statements[1])
    assert s.key_fetches() == 0
