"""A full level-1 tile (65,536 entries) on SQLite: only level-0 tiles go to the tile file, the
full level-1 tile stays in the tiles table (issue 16: a survivor of the final mutation run; every
other test stays below 65,536 entries)."""

from __future__ import annotations

from hashlib import sha256

from tests.tlog_fixtures import *  # noqa: F401,F403 - fixtures
from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from verifier import merkle

N = 65536 + 256  # level-1 tile 0 full, and one more level-0 tile


def test_a_full_level1_tile_is_stored_as_a_table_tile_and_serves_proofs(tmp_path, signer):
    path = tmp_path / "log.sqlite"
    leaves = [sha256(b"L%07d" % i).digest() for i in range(N)]
    with Log.open(path, origin=ORIGIN, note_signer=signer, sequencer=False) as log:
        for a in range(0, N, 8192):
            log.append([(lf, b"", ()) for lf in leaves[a:a + 8192]])
    hashes = [merkle.leaf_hash(lf) for lf in leaves]
    with Log.open(path, origin=ORIGIN, note_signer=signer, sequencer=False) as log:
        root = log.root(N)
        assert root == merkle.root_of(hashes)
        assert log.root(65536) == merkle.root_of(hashes[:65536])
        for i in (0, 255, 256, 65535, 65536, N - 1):
            proof = log.inclusion_proof(i, N)
            assert merkle.root_from_inclusion_proof(i, N, hashes[i], proof) == root
