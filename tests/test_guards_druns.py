"""tlog.storage.druns without numpy: every vectorised path (filters, run arrays, merges,
probes) has a pure-Python twin that must give the same bytes and answers; and a run opened
without numpy's views still answers a probe that comes with a numpy array."""

from __future__ import annotations

import array
import random

import pytest

from tlog.storage import druns

np = pytest.importorskip("numpy")


def _keys(n: int, seed: int) -> list[int]:
    """Distinct signed 64-bit keys, both signs, every bit position in play."""
    rnd = random.Random(seed)
    ks = {-(1 << 63), (1 << 63) - 1, -1, 0} if n > 8 else set()
    while len(ks) < n:
        ks.add(rnd.getrandbits(64) - (1 << 63))
    return sorted(ks)


def _run(d, a: int, keys: list[int], level: int = 0) -> druns.Run:
    """A run of ``keys`` (sorted) for the entries [a, a + len(keys)), entry a + i holding keys[i
    * 7 % n] (indexes not in key order)."""
    n = len(keys)
    m = {keys[(i * 7) % n]: a + i for i in range(n)}
    ks, idxs = druns.from_map(a, m)
    path = druns.write_run(str(d), a, a + n, ks, idxs)
    return druns.Run(path, a, a + n, n, level)


def _both(monkeypatch, fn):
    """fn() with numpy and with the pure-Python fallback."""
    with_np = fn()
    with monkeypatch.context() as m:
        m.setattr(druns, "_np", None)
        without = fn()
    return with_np, without


@pytest.mark.parametrize("n", [0, 1, 5, 300])
def test_the_filter_is_the_same_without_numpy(monkeypatch, n):
    keys = array.array("q", _keys(n, n))
    a, b = _both(monkeypatch, lambda: druns.build_filter(keys))
    assert a == b and len(a) == (1 << druns.filter_log2(n)) // 8
    if n:
        assert any(a)


def test_run_arrays_from_a_map_are_the_same_without_numpy(monkeypatch):
    ks = _keys(300, 1)
    m = {k: 1000 + (i * 13) % 300 for i, k in enumerate(reversed(ks))}  # not in key order
    (k1, i1), (k2, i2) = _both(monkeypatch, lambda: druns.from_map(1000, m))
    assert (k1.typecode, i1.typecode) == (k2.typecode, i2.typecode) == ("q", "I")
    assert list(k1) == list(k2) == ks
    assert list(i1) == list(i2) == [m[k] - 1000 for k in ks]


def test_a_merge_is_the_same_without_numpy(tmp_path, monkeypatch):
    keys = _keys(900, 2)
    random.Random(3).shuffle(keys)
    runs = [_run(tmp_path, 300 * j, sorted(keys[300 * j:300 * (j + 1)])) for j in range(3)]
    (k1, i1), (k2, i2) = _both(monkeypatch, lambda: druns.merge(runs))
    assert list(k1) == list(k2) == sorted(keys)
    assert list(i1) == list(i2)
    held = {k: r.get(k) for r in runs for k in r.keys}
    assert list(i1) == [held[k] for k in k1]  # runs[0].a is 0: relative indexes are absolute ones


def test_a_probe_is_the_same_without_numpy(tmp_path, monkeypatch):
    keys = _keys(600, 4)
    runs = [_run(tmp_path, 0, keys[:300]), _run(tmp_path, 300, keys[300:])]
    absent = [k ^ 1 for k in keys[::5]] + _keys(200, 5)  # filter hits and misses
    ask = set(absent) - set(keys) | set(keys[::3])  # a set, as tlog.storage.sqlite passes
    a, b = _both(monkeypatch, lambda: druns.probe(runs, ask))
    assert a == b == {k: next(r.get(k) for r in runs if r.get(k) is not None) for k in keys[::3]}


def test_a_run_opened_without_numpy_answers_a_probe_with_an_array(tmp_path, monkeypatch):
    """The numpy probe needs the run's numpy views; a run opened while numpy was unavailable has
    none and takes the pure-Python probe even when the caller brings the keys as an array."""
    keys = _keys(300, 6)
    with monkeypatch.context() as m:
        m.setattr(druns, "_np", None)
        bare = _run(tmp_path, 0, keys)
    ask = keys[::4] + [k ^ 1 for k in keys[1::4]]
    assert len(ask) >= 32  # druns.probe passes the keys as an array too
    want = {k: bare.get(k) for k in keys[::4]}
    assert druns.probe([bare], ask) == want
    found: dict = {}
    bare.probe(ask, found, np.array(ask, dtype=np.int64).view(np.uint64))
    assert found == want
