"""The log's signing keys in a PKCS#11 token (an HSM; SoftHSM2 in tests and CI), optional.

Selected by the settings ``pkcs11_module`` (the PKCS#11 library), ``pkcs11_token`` (token label)
and ``pkcs11_pin`` (user PIN; e.g. ``TLOG_PKCS11_PIN``). The private keys are made in the token
(never extractable) and never touch the data dir:

    receipt keys     EC P-256 key pairs, label ``tlog-receipt``, CKA_ID = the key's kid (RFC 9679
                     thumbprint); the active one is the kid the log's storage names (tlog.logstate)
    checkpoint key   Ed25519 key pair (CKM_EDDSA), label ``tlog-checkpoint``

Signing goes through ``CKM_ECDSA`` over the SHA-256 digest (SoftHSM2 has no CKM_ECDSA_SHA256)
and ``CKM_EDDSA``. The keys are wrapped as ``cryptography`` private key objects whose
``sign`` calls the token, so the COSE and note code is the same for file and token keys. One
session per process, re-opened after a fork (gunicorn forks its workers), calls serialised by a
lock (a PKCS#11 session is single-threaded).
"""

from __future__ import annotations

import hashlib
import os
import threading

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .keys import KeyError_, LogKeys, ReceiptKey, _kid_of

RECEIPT_LABEL = "tlog-receipt"
CHECKPOINT_LABEL = "tlog-checkpoint"
P256_OID = "secp256r1"
ED25519_OID = "1.3.101.112"


_generation = [0]  # bumped when the library is re-initialised: every Token re-opens its session


def enabled(config) -> bool:
    return bool(getattr(config, "pkcs11_module", None))


class Token:
    """One PKCS#11 session per process on the configured token."""

    _by_key: dict[tuple, "Token"] = {}

    def __init__(self, module: str, label: str | None, pin: str | None) -> None:
        self.module, self.label, self.pin = module, label, pin
        self._lock = threading.RLock()
        self._pid = None
        self._session = None
        self._lib = None
        self._handles: dict = {}
        self._gen = -1

    @classmethod
    def of(cls, config) -> "Token":
        key = (config.pkcs11_module, config.pkcs11_token, config.pkcs11_pin)
        tok = cls._by_key.get(key)
        if tok is None:
            tok = cls._by_key[key] = cls(*key)
        return tok

    def session(self):
        """The session of this process (opened, or re-opened after a fork)."""
        import pkcs11

        def current():
            return self._session is not None and self._pid == os.getpid() and self._gen == _generation[0]

        if current():
            return self._session
        with self._lock:
            if current():
                return self._session
            try:
                lib = pkcs11.lib(self.module)
                if self._pid is not None and self._pid != os.getpid():
                    lib.reinitialize()  # a forked child: the parent's PKCS#11 state is not ours
                    _generation[0] += 1
                try:
                    tok = lib.get_token(token_label=self.label) if self.label else next(iter(lib.get_tokens()))
                except pkcs11.NoSuchToken:
                    lib.reinitialize()  # the slot list is read at initialisation: a token made since
                    _generation[0] += 1
                    tok = lib.get_token(token_label=self.label)
                self._session = tok.open(user_pin=self.pin, rw=True)
                self._gen = _generation[0]
            except (pkcs11.PKCS11Error, StopIteration, OSError, RuntimeError) as e:
                raise KeyError_(f"PKCS#11 token {self.label!r} in {self.module}: {type(e).__name__} {e}".strip()) from None
            self._lib, self._pid = lib, os.getpid()
            self._handles = {}
            return self._session

    def sign(self, handle_attrs: dict, data: bytes, mechanism) -> bytes:
        import pkcs11
        from pkcs11 import ObjectClass

        with self._lock:
            s = self.session()
            hk = tuple(sorted(handle_attrs.items()))
            key = self._handles.get(hk)
            if key is None:
                try:
                    key = self._handles[hk] = s.get_key(object_class=ObjectClass.PRIVATE_KEY, **handle_attrs)
                except pkcs11.PKCS11Error as e:
                    raise KeyError_(f"PKCS#11 key {handle_attrs}: {type(e).__name__}") from None
            try:
                return key.sign(data, mechanism=mechanism)
            except pkcs11.PKCS11Error as e:
                raise KeyError_(f"PKCS#11 signing failed: {type(e).__name__}") from None

    # -- finding and making keys --------------------------------------------------------------
    def _objects(self, **attrs):
        from pkcs11 import Attribute

        mapping = {"label": Attribute.LABEL, "id": Attribute.ID, "object_class": Attribute.CLASS}
        with self._lock:
            return list(self.session().get_objects({mapping[k]: v for k, v in attrs.items()}))

    def public_point(self, label: str, id_: bytes | None = None) -> bytes | None:
        from pkcs11 import Attribute, ObjectClass

        attrs = {"label": label, "object_class": ObjectClass.PUBLIC_KEY}
        if id_ is not None:
            attrs["id"] = id_
        found = self._objects(**attrs)
        if not found:
            return None
        return _octets(found[0][Attribute.EC_POINT])

    def has_private(self, label: str, id_: bytes | None = None) -> bool:
        from pkcs11 import ObjectClass

        attrs = {"label": label, "object_class": ObjectClass.PRIVATE_KEY}
        if id_ is not None:
            attrs["id"] = id_
        return bool(self._objects(**attrs))

    def generate(self, label: str, curve: str) -> bytes:
        """A new non-extractable key pair in the token; returns its public point."""
        import secrets

        from pkcs11 import Attribute, KeyType, Mechanism
        from pkcs11.util.ec import encode_named_curve_parameters

        ed = curve == ED25519_OID
        with self._lock:
            s = self.session()
            params = s.create_domain_parameters(
                KeyType.EC_EDWARDS if ed else KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True)
            tmp_id = b"tmp-" + secrets.token_bytes(8)
            pub, priv = params.generate_keypair(
                store=True, label=label, id=tmp_id,
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN if ed else Mechanism.EC_KEY_PAIR_GEN,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
            point = _octets(pub[Attribute.EC_POINT])
            if not ed:  # receipt keys are found by kid
                kid = _kid_of(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
                pub[Attribute.ID] = kid
                priv[Attribute.ID] = kid
            return point


def _octets(der: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING holding the point."""
    if der[:1] == b"\x04" and len(der) >= 2:
        n = der[1]
        if n < 0x80 and len(der) == 2 + n:
            return der[2:]
        if n == 0x81 and len(der) == 3 + der[2]:
            return der[3:]
    return der


class TokenECKey(ec.EllipticCurvePrivateKey):
    """A P-256 private key in the token: ``sign`` (ECDSA SHA-256, DER as cryptography returns)."""

    def __init__(self, token: Token, kid: bytes, public: ec.EllipticCurvePublicKey) -> None:
        self._token, self._kid, self._public = token, kid, public

    def sign(self, data, signature_algorithm) -> bytes:
        from pkcs11 import Mechanism

        raw = self._token.sign({"id": self._kid}, hashlib.sha256(bytes(data)).digest(), Mechanism.ECDSA)
        return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self):
        return self._public.curve

    @property
    def key_size(self) -> int:
        return 256

    def exchange(self, *a, **k):
        raise TypeError("a token key does not do key exchange")

    def private_numbers(self):
        raise TypeError("the private key stays in the token")

    def private_bytes(self, *a, **k):
        raise TypeError("the private key stays in the token")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class TokenEd25519Key(ed25519.Ed25519PrivateKey):
    """The checkpoint (note) key in the token: ``sign`` with CKM_EDDSA."""

    def __init__(self, token: Token, public: ed25519.Ed25519PublicKey) -> None:
        self._token, self._public = token, public

    def sign(self, data) -> bytes:
        from pkcs11 import Mechanism

        return self._token.sign({"label": CHECKPOINT_LABEL}, bytes(data), Mechanism.EDDSA)

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def private_bytes(self, *a, **k):
        raise TypeError("the private key stays in the token")

    def private_bytes_raw(self):
        raise TypeError("the private key stays in the token")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def receipt_key(config, kid: bytes) -> ReceiptKey | None:
    """The token's receipt key ``kid`` (None if the token has no such private key)."""
    tok = Token.of(config)
    point = tok.public_point(RECEIPT_LABEL, kid)
    if point is None or not tok.has_private(RECEIPT_LABEL, kid):
        return None
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    if _kid_of(pub) != kid:
        return None
    return ReceiptKey(TokenECKey(tok, kid, pub), kid)


def _note_signer(config, origin: str):
    from verifier import note as vnote

    tok = Token.of(config)
    point = tok.public_point(CHECKPOINT_LABEL)
    if point is None or not tok.has_private(CHECKPOINT_LABEL):
        return None
    return vnote.Signer.from_private_key(origin, TokenEd25519Key(tok, ed25519.Ed25519PublicKey.from_public_bytes(point)))


def load_keys(config, origin: str, active: bytes | None) -> LogKeys:
    """The log's keys from the token; a missing key is a KeyError_ naming it."""
    where = f"the PKCS#11 token {config.pkcs11_token!r}"
    signer = _note_signer(config, origin)
    if signer is None:
        raise KeyError_(f"the checkpoint key {CHECKPOINT_LABEL!r} is not in {where}: restore the token from its backup")
    if active is None:
        from pkcs11 import Attribute, ObjectClass

        found = Token.of(config)._objects(label=RECEIPT_LABEL, object_class=ObjectClass.PRIVATE_KEY)
        if len(found) != 1:
            raise KeyError_(f"{where} holds {len(found)} receipt keys ({RECEIPT_LABEL!r}), not one")
        active = bytes(found[0][Attribute.ID])
    rk = receipt_key(config, active)
    if rk is None:
        raise KeyError_(f"the receipt key {active.hex()} ({RECEIPT_LABEL!r}) is not in {where}: "
                        "restore the token from its backup")
    return LogKeys(receipt=rk, retired={}, note_signer=signer, origin=origin)


def create_keys(config, origin: str) -> LogKeys:
    """Keys of a new log, made in the token (those missing)."""
    tok = Token.of(config)
    if tok.public_point(CHECKPOINT_LABEL) is None:
        tok.generate(CHECKPOINT_LABEL, ED25519_OID)
    from pkcs11 import ObjectClass

    if not tok._objects(label=RECEIPT_LABEL, object_class=ObjectClass.PRIVATE_KEY):
        tok.generate(RECEIPT_LABEL, P256_OID)
    return load_keys(config, origin, None)


def new_receipt_key(config) -> ReceiptKey:
    """A new receipt key in the token (``tlog rotate-key``)."""
    tok = Token.of(config)
    point = tok.generate(RECEIPT_LABEL, P256_OID)
    kid = _kid_of(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
    return receipt_key(config, kid)
