"""The main tier of the SQLite dedup index (schema 5): sorted, immutable run files.

A *run* holds the dedup keys of the entries [a, b) of the log (every value of those entries
except the ones recorded in ``dcoll``): the 8-byte keys sorted (signed int64, the order of
``tlog.storage.sqlite._key``), beside each the entry's index relative to ``a`` (uint32), and a
Bloom filter over the keys. One file per run in ``<database>-dedup/``::

    header  (40 bytes)  magic "TLOGDR1\\0", a, b, n (uint64 LE), filter bits log2 (uint32), byte order
    keys    n x int64   sorted ascending
    idxs    n x uint32  index - a
    filter  2^L bits    two probes: bits (k mod 2^L) and ((k >> 32) mod 2^L)

Runs are written once (to a temporary name, fsynced, renamed, directory fsynced) *before* the
integration transaction that lists them in the ``druns`` table commits, and deleted only after
the transaction that unlisted them committed; the table is the truth, and a run's content is a
function of the entries [a, b) alone, so a listed run whose file is missing or damaged is
rebuilt from the entries (tlog.storage.sqlite). Files not listed are left-overs of a crash or of a
merge whose transaction rolled back, removed at open under the writer lock.

Size-tiered merging with a bounded fan-in (:data:`FANIN`): a run made from the in-memory recent
tier has level 0; whenever the newest ``FANIN`` runs have the same level they are merged into
one run of the next level. A key is written once per level it passes through (about
log_FANIN(N / merge_every) + 1 times), never once per merge of some other run, so the bytes
written per entry grow with the logarithm of the log size and only ``FANIN - 1`` runs per level
are probed. Most probes of absent keys (every new entry's) stop at the filter; a filter hit is
confirmed by a binary search in the memory-mapped keys, and every hit by the full value (in
tlog.storage.sqlite), so answers stay exact.
"""

from __future__ import annotations

import array
import bisect
import mmap
import os
import struct
import subprocess
import sys
import time

try:  # vectorised filters, probes, sorts and merges (~10-50x less CPU); pure Python without it
    import numpy as _np
except ImportError:  # pragma: no cover (numpy is a dependency; the fallback is tested by forcing it)
    _np = None

FANIN = 8
BITS_PER_KEY = 8  # filter size: the power of two >= 8 bits per key (8-16 bits/key: 1.4-4.9 % false hits)
MAX_FILTER_LOG2 = 32  # two independent 32-bit probes from one 64-bit key
MAGIC = b"TLOGDR1\0"
_HDR = struct.Struct("<8sQQQI4s")
_ORDER = b"LE\0\0" if sys.byteorder == "little" else b"BE\0\0"
_U64 = 1 << 64
_B63 = 1 << 63


class RunMissing(Exception):
    """A listed run's file is absent or does not match its manifest row."""


def filter_log2(n: int) -> int:
    return min(MAX_FILTER_LOG2, max(6, (max(n, 1) * BITS_PER_KEY - 1).bit_length()))


def run_name(a: int, b: int) -> str:
    return "run-%012d-%012d.dd" % (a, b)


MERGED = ".merged"  # suffix of a background merge's output until a transaction lists it


class Run:
    """One run file, memory-mapped (shared page cache, nothing copied into the process)."""

    __slots__ = ("a", "b", "n", "level", "path", "keys", "idxs", "filt", "mask", "_nfilt", "_nkeys")

    def __init__(self, path: str, a: int, b: int, n: int, level: int) -> None:
        self.a, self.b, self.n, self.level, self.path = a, b, n, level, path
        try:
            f = open(path, "rb")
        except FileNotFoundError as e:
            raise RunMissing(path) from e
        with f:
            lg = filter_log2(n)
            size = _HDR.size + 12 * n + (1 << lg) // 8
            if os.fstat(f.fileno()).st_size != size:
                raise RunMissing(f"{path}: size does not match {n} keys")
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the map outlives the descriptor
        if _HDR.unpack_from(m, 0) != (MAGIC, a, b, n, lg, _ORDER):
            m.close()
            raise RunMissing(f"{path}: header does not match its manifest row")
        # no explicit unmap: a run dropped from the cache may still be in use by another
        # thread's lookup; the map goes when its last view does
        mv = memoryview(m)
        o = _HDR.size
        self.keys = mv[o:o + 8 * n].cast("q")
        self.idxs = mv[o + 8 * n:o + 12 * n].cast("I")
        self.filt = mv[o + 12 * n:]
        self.mask = (1 << lg) - 1
        self._nfilt = None if _np is None else _np.frombuffer(self.filt, dtype=_np.uint8)
        self._nkeys = None if _np is None else _np.frombuffer(self.keys, dtype=_np.int64)

    def get(self, k: int) -> int | None:
        """The entry index stored for key ``k``, or None."""
        keys = self.keys
        i = bisect.bisect_left(keys, k)
        return self.a + self.idxs[i] if i < self.n and keys[i] == k else None

    def probe(self, ks, found: dict, arr=None) -> None:
        """Add the keys of ``ks`` this run holds to ``found`` (key -> index); ``arr``: the
        same keys as a numpy uint64 array (the filter tested for all of them at once)."""
        f, m = self.filt, self.mask
        if arr is not None and self._nfilt is not None:
            nf, m64 = self._nfilt, _np.uint64(m)
            p, q = arr & m64, (arr >> _np.uint64(32)) & m64
            hit = (nf[p >> _np.uint64(3)] >> (p & _np.uint64(7)).astype(_np.uint8)) \
                & (nf[q >> _np.uint64(3)] >> (q & _np.uint64(7)).astype(_np.uint8)) & 1
            cand = arr[hit.astype(bool)].view(_np.int64)
            pos = _np.searchsorted(self._nkeys, cand)  # the binary searches of the filter's hits
            ok = pos < self.n
            pos, cand = pos[ok], cand[ok]
            eq = self._nkeys[pos] == cand
            idxs = self.idxs
            for k, i in zip(cand[eq].tolist(), pos[eq].tolist()):
                found[k] = self.a + idxs[i]
            return
        for k in [k for k in ks if f[(k & m) >> 3] >> (k & 7) & 1 and f[((k >> 32) & m) >> 3] >> ((k >> 32) & 7) & 1]:
            i = self.get(k)
            if i is not None:
                found[k] = i

def fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_run(d: str, a: int, b: int, keys: array.array, idxs: array.array, suffix: str = "") -> str:
    """Write a run durably (temporary file, fsync, rename, directory fsync); its path (the
    run's name plus ``suffix``: a background merge's output is renamed when it is listed)."""
    n = len(keys)
    if len(idxs) != n or keys.typecode != "q" or idxs.typecode != "I" or idxs.itemsize != 4:
        raise ValueError("a run is n int64 keys and n uint32 offsets")
    filt = build_filter(keys)
    lg = filter_log2(n)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, run_name(a, b) + suffix)
    tmp = "%s.tmp-%d-%d" % (path, os.getpid(), time.monotonic_ns())
    with open(tmp, "wb") as f:
        f.write(_HDR.pack(MAGIC, a, b, n, lg, _ORDER))
        f.write(keys.tobytes())
        f.write(idxs.tobytes())
        f.write(filt)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(d)
    return path


def build_filter(keys: array.array) -> bytearray:
    """The Bloom filter of a run's keys (two probes: see the module docstring)."""
    lg = filter_log2(len(keys))
    m = (1 << lg) - 1
    filt = bytearray((1 << lg) // 8)
    if _np is not None:
        nf = _np.frombuffer(filt, dtype=_np.uint8)
        u = _np.frombuffer(keys, dtype=_np.int64).view(_np.uint64) if len(keys) else _np.zeros(0, _np.uint64)
        m64 = _np.uint64(m)
        for p in (u & m64, (u >> _np.uint64(32)) & m64):
            _np.bitwise_or.at(nf, p >> _np.uint64(3), _np.left_shift(1, (p & _np.uint64(7)).astype(_np.uint8)).astype(_np.uint8))
        return filt
    for k in keys:
        p = k & m
        filt[p >> 3] |= 1 << (p & 7)
        p = (k >> 32) & m
        filt[p >> 3] |= 1 << (p & 7)
    return filt


def _arrays(ks, vs) -> tuple[array.array, array.array]:
    out_k, out_i = array.array("q"), array.array("I")
    out_k.frombytes(ks.astype(_np.int64).tobytes())
    out_i.frombytes(vs.astype(_np.uint32).tobytes())
    return out_k, out_i


def from_map(a: int, keys: dict[int, int]) -> tuple[array.array, array.array]:
    """A run's arrays from a key -> absolute index map."""
    if _np is not None:
        ks = _np.fromiter(keys.keys(), dtype=_np.int64, count=len(keys))
        vs = _np.fromiter(keys.values(), dtype=_np.int64, count=len(keys)) - a
        order = _np.argsort(ks, kind="stable")
        return _arrays(ks[order], vs[order])
    ks = sorted(keys)
    return array.array("q", ks), array.array("I", [keys[k] - a for k in ks])


def merge(runs: list[Run]) -> tuple[array.array, array.array]:
    """The arrays of one run holding the keys of ``runs`` (consecutive: each one's ``b`` is the
    next one's ``a``). Keys are uniform, so the merge goes by key-range slices of ~1M keys:
    each slice's (key, index) pairs packed in one int and sorted (Timsort merges the sorted
    pieces), bounding the memory to the slice."""
    a0 = runs[0].a
    total = sum(r.n for r in runs)
    parts = max(1, total // 1_000_000)
    out_k, out_i = array.array("q"), array.array("I")
    pos = [0] * len(runs)
    for s in range(1, parts + 1):
        hi = -_B63 + (s * _U64) // parts
        comb: list[int] = []
        nk, ni = [], []
        for j, r in enumerate(runs):
            e = r.n if s == parts else bisect.bisect_left(r.keys, hi, pos[j])
            off = r.a - a0
            if _np is not None:
                nk.append(_np.frombuffer(r.keys[pos[j]:e], dtype=_np.int64))
                ni.append(_np.frombuffer(r.idxs[pos[j]:e], dtype=_np.uint32).astype(_np.int64) + off)
            else:
                comb += [((k + _B63) << 32) | (i + off) for k, i in zip(r.keys[pos[j]:e], r.idxs[pos[j]:e])]
            pos[j] = e
        if _np is not None:
            ks, vs = _np.concatenate(nk), _np.concatenate(ni)
            order = _np.argsort(ks, kind="stable")  # sorted pieces: a merge
            k2, i2 = _arrays(ks[order], vs[order])
            out_k.extend(k2)
            out_i.extend(i2)
            continue
        comb.sort()
        out_k.extend([(c >> 32) - _B63 for c in comb])
        out_i.extend([c & 0xFFFFFFFF for c in comb])
    return out_k, out_i


def probe(runs, ks) -> dict[int, int]:
    """Which of the keys ``ks`` the runs hold: key -> index."""
    found: dict[int, int] = {}
    if ks:
        arr = None
        if _np is not None and len(ks) >= 32:
            arr = _np.fromiter(ks, dtype=_np.int64, count=len(ks)).view(_np.uint64)
        for r in runs:
            r.probe(ks, found, arr)
    return found


def lookup(runs, k: int) -> int | None:
    for r in runs:
        f, m = r.filt, r.mask
        if f[(k & m) >> 3] >> (k & 7) & 1 and f[((k >> 32) & m) >> 3] >> ((k >> 32) & 7) & 1:
            i = r.get(k)
            if i is not None:
                return i
    return None


def remove_unlisted(d: str, listed: set[str], tmp_age: float = 3600.0) -> None:
    """Delete run files the manifest does not list (call with the writer lock held), and
    temporary files and background merges' outputs older than ``tmp_age`` seconds (a crashed
    writer's; a younger one may belong to a merge still running in another process)."""
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    now = time.time()
    for name in names:
        p = os.path.join(d, name)
        try:
            if name.endswith(".dd") and name not in listed:
                os.unlink(p)
            elif (".dd.tmp-" in name or name.endswith(MERGED)) and now - os.stat(p).st_mtime > tmp_age:
                os.unlink(p)
        except FileNotFoundError:
            pass


def mergeable(runs: list[Run], busy=()) -> list[Run] | None:
    """The oldest FANIN consecutive runs of one level (levels never grow from the oldest run
    to the newest, so a level's runs are consecutive), not starting at an ``a`` in ``busy``."""
    i = 0
    while i < len(runs):
        j = i
        while j < len(runs) and runs[j].level == runs[i].level:
            j += 1
        if j - i >= FANIN and runs[i].a not in busy:
            return runs[i:i + FANIN]
        i = j
    return None


def spawn_merge(d: str, runs: list[Run]) -> subprocess.Popen:
    """Merge ``runs`` into one run file in a child process (``python -m tlog.storage.druns``):
    the write lock is not held meanwhile and the merge uses the other core. The child writes the
    file durably and exits 0; listing it is the caller's business."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    args = [sys.executable, "-m", "tlog.storage.druns", d] + ["%d:%d:%d" % (r.a, r.b, r.n) for r in runs]
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _main(argv: list[str]) -> int:
    d, specs = argv[0], argv[1:]
    runs = []
    for spec in specs:
        a, b, n = map(int, spec.split(":"))
        runs.append(Run(os.path.join(d, run_name(a, b)), a, b, n, 0))
    for x, y in zip(runs, runs[1:]):
        if x.b != y.a:
            raise SystemExit("runs to merge must be consecutive")
    write_run(d, runs[0].a, runs[-1].b, *merge(runs), suffix=MERGED)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
