"""Shared builders for the verifier tests (no tests here): keys, statements, a small log
and receipts signed the way docs/ARCHITECTURE.md specifies."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from verifier import cose, keys, merkle, receipt, transparent

LOG_ISSUER = "https://log.example"
LOG_ORIGIN = "log.example/test"


@lru_cache(maxsize=None)
def key(kind: str = "p256", n: int = 0):
    """Deterministic-per-run cached private keys by kind: p256 p384 p521 ed25519 rsa."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def signed_statement(priv=None, payload: bytes | None = b'{"hello": "world"}', *, sub: str = "urn:example:sub",
                     iss: str = "https://issuer.example", detached: bool = False, unprotected=None,
                     extra: dict | None = None) -> bytes:
    """A Signed Statement with kid = thumbprint of the issuer key."""
    priv = priv or key("p256", 1)
    prot = {1: cose.alg_for_key(priv), 3: "application/json", 4: keys.thumbprint(priv), 15: {1: iss, 2: sub}}
    if extra:
        prot.update(extra)
        for k, v in list(prot.items()):
            if v is None:
                del prot[k]
    return cose.sign1(priv, prot, payload, detached=detached, unprotected=unprotected)


def leaf_input_of(stmt: bytes) -> bytes:
    return hashlib.sha256(cose.decode_sign1(stmt).statement_bytes()).digest()


class Log:
    """An in-memory RFC 9162 log over statements, signing receipts with one key."""

    def __init__(self, n: int, priv=None) -> None:
        self.priv = priv or key("p256", 2)
        self.alg = cose.alg_for_key(self.priv)
        self.kid = keys.thumbprint(self.priv)
        self.statements = [signed_statement(payload=f"entry {i}".encode(), sub=f"s{i}") for i in range(n)]
        self.leaf_inputs = [leaf_input_of(s) for s in self.statements]
        self.leaf_hashes = [merkle.leaf_hash(d) for d in self.leaf_inputs]

    @property
    def public(self):
        return self.priv.public_key()

    def keys(self) -> dict:
        return {self.kid: self.public}

    def root(self, size: int) -> bytes:
        return merkle.root_of(self.leaf_hashes[:size])

    def protected(self, iat: int = 1700000000) -> bytes:
        return receipt.receipt_protected(alg=self.alg, kid=self.kid, issuer=LOG_ISSUER, subject=LOG_ORIGIN, iat=iat)

    def inclusion_receipt(self, index: int, size: int | None = None) -> bytes:
        size = size or len(self.leaf_hashes)
        prot = self.protected()
        sig = cose.sign_tbs(self.priv, self.alg, cose.sig_structure(prot, self.root(size)))
        path = merkle.inclusion_proof(self.leaf_hashes[:size], index)
        return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(size, index, path)])

    def consistency_receipt(self, size1: int, size2: int) -> bytes:
        prot = self.protected()
        sig = cose.sign_tbs(self.priv, self.alg, cose.sig_structure(prot, self.root(size2)))
        path = merkle.consistency_proof(self.leaf_hashes[:size2], size1)
        return receipt.assemble_receipt(prot, sig, consistency=[receipt.encode_consistency_proof(size1, size2, path)])

    def transparent_statement(self, index: int, size: int | None = None) -> bytes:
        return transparent.attach_receipts(self.statements[index], [self.inclusion_receipt(index, size)])
