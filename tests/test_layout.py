"""C2SP tlog-tiles paths and tile math (tlog.layout)."""

import pytest
from hypothesis import given, strategies as st

from tlog import layout
from tlog.layout import (encode_index, entries_path, parse_index, parse_tile_path, partial_width,
                         tile_path, tile_width, tiles_for_size)


@pytest.mark.parametrize("n, s", [(0, "000"), (67, "067"), (999, "999"), (1000, "x001/000"),
                                  (1234067, "x001/x234/067"), (10**9, "x001/x000/x000/000")])
def test_encode_index(n, s):
    assert encode_index(n) == s
    assert parse_index(s) == n


def test_paths_from_spec():
    assert tile_path(0, 1234067, 8) == "tile/0/x001/x234/067.p/8"
    assert entries_path(1234067, 8) == "tile/entries/x001/x234/067.p/8"
    assert entries_path(0, 1) == "tile/entries/000.p/1"
    assert entries_path(0, 256) == "tile/entries/000"
    assert entries_path(0) == "tile/entries/000"
    assert tile_path(3, 5) == "tile/3/005"


def test_parse_tile_path():
    r = parse_tile_path("tile/0/x001/x234/067.p/8")
    assert r == (0, 1234067, 8) and r.is_partial and not r.is_entries
    r = parse_tile_path("/tile/entries/000")
    assert r.level is None and r.index == 0 and r.width == 256 and r.is_entries
    assert r.path() == "tile/entries/000"
    assert parse_tile_path("tile/63/001").level == 63


@pytest.mark.parametrize("bad", [
    "tile/0/1", "tile/0/0001", "tile/0/x001", "tile/0/001/002", "tile/0/x000/001", "tile/0/x01/001",
    "tile/00/000", "tile/64/000", "tile/-1/000", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/08",
    "tile/0/000.p/", "tile/0/000.p/1a", "tile/entries", "tile/0/", "tiles/0/000", "tile/entry/000",
    "tile/0/000/", "tile/0/x001/000.p/8/", "tile/0/0a0", "tile/0/000.p/8.p/8", "", "tile/0/ 000",
])
def test_parse_tile_path_strict(bad):
    with pytest.raises(ValueError):
        parse_tile_path(bad)


@pytest.mark.parametrize("args", [(-1, 0), (64, 0), (0, -1), (0, 0, 0), (0, 0, 257), (True, 0), (0, 1.0)])
def test_tile_path_rejects(args):
    with pytest.raises(ValueError):
        tile_path(*args)


@given(st.integers(0, 2**63), st.integers(0, 63), st.integers(1, 256))
def test_roundtrip(n, level, width):
    assert parse_tile_path(tile_path(level, n, width)) == (level, n, width)
    assert parse_tile_path(entries_path(n, width)) == (None, n, width)


def test_tiles_for_size_spec_example():
    # "size 70,000 -> 273 full L0 tiles + L0 partial w=112, 1 full L1 + L1 partial w=17, L2 partial w=1"
    t = tiles_for_size(70000)
    l0 = [x for x in t if x[0] == 0]
    assert len([x for x in l0 if x[2] == 256]) == 273 and l0[-1] == (0, 273, 112)
    assert [x for x in t if x[0] == 1] == [(1, 0, 256), (1, 1, 17)]
    assert [x for x in t if x[0] == 2] == [(2, 0, 1)]
    assert partial_width(0, 70000) == 112 and partial_width(1, 70000) == 17 and partial_width(2, 70000) == 1
    assert tiles_for_size(0) == [] and tiles_for_size(256) == [(0, 0, 256), (1, 0, 1)]


@given(st.integers(0, 10**7))
def test_tile_width_agrees(size):
    t = tiles_for_size(size)
    for level, index, width in t[-3:] + t[:2]:
        assert tile_width(level, index, size) == width
    last_level = t[-1][0] if t else -1
    assert tile_width(last_level + 1, 0, size) == 0
    assert tile_width(0, (size >> 8) + 1, size) == 0
