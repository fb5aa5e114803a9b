"""What the log publishes about itself for clients: the transparency configuration (SCRAPI
``/.well-known/transparency-configuration``, with the shard links of :mod:`tlog.shard`) and the
receipt keys as a JWK set (``/jwks``).

:class:`Discovery` is a part of :class:`tlog.service.LogService` (it uses the service's
``config``, ``state``, ``keys``, ``policy``, ``log``, ``issuer`` and ``origin``).
"""

from __future__ import annotations

from verifier import cbor as vcbor

from . import shard

__all__ = ["Discovery"]


class Discovery:
    """The published-configuration part of :class:`tlog.service.LogService`."""

    _predecessor: dict | None = None  # {origin, url} of a successor's entry 0 ({} for a first shard)

    def transparency_configuration(self) -> bytes:
        """The transparency configuration as CBOR (the SCRAPI default representation)."""
        return vcbor.dumps(self.transparency_configuration_obj())

    def transparency_configuration_obj(self) -> dict:
        """The transparency configuration (text keys, JSON-compatible values); every URL in it
        is made from the configured public URL (``public_url``, default the issuer URL), never
        from a request's Host header."""
        base = self.config.effective_public_url()
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/jwks",
            "scitt_keys_uri": f"{base}/.well-known/scitt-keys",
            "registration_endpoint": f"{base}/entries",
            "checkpoint_origin": self.origin,
            "checkpoint_vkey": self.keys.vkey,
            "checkpoint_uri": f"{base}/checkpoint",
            "registration_policy": self.policy_id,
            "supported_signature_algorithms": sorted(self.policy.allowed_algs),
            **self._shard_configuration(),
        }

    def _shard_configuration(self) -> dict:
        """Shards by time, for clients: once closed, ``registration_closed`` and the successor's
        URL (``successor``); a successor names its predecessor (``predecessor``: origin and URL
        from its entry 0, which clients verify, tlog.shard)."""
        out: dict = {}
        closed = self.state.closed
        if closed is not None:
            out["registration_closed"] = True
            if closed.get("successor"):
                out["successor"] = closed["successor"]
        if self._predecessor is None and self.log.size:  # entry 0 never changes once written
            self._predecessor = shard.predecessor_of(self.log.entry_data(0))
        if self._predecessor:
            out["predecessor"] = self._predecessor
        return out

    def jwks(self) -> dict:
        import base64

        from cryptography.hazmat.primitives.asymmetric import ec

        def b64(b: bytes) -> str:
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        out = []
        keys = self.keys
        for kid, pub in [(keys.receipt.kid, keys.receipt.private.public_key())] + sorted(
            keys.retired.items()
        ):
            if isinstance(pub, ec.EllipticCurvePublicKey):
                n = pub.public_numbers()
                size = (pub.curve.key_size + 7) // 8
                out.append(
                    {
                        "kty": "EC",
                        "crv": {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name],
                        "x": b64(n.x.to_bytes(size, "big")),
                        "y": b64(n.y.to_bytes(size, "big")),
                        "kid": b64(kid),
                        "alg": {32: "ES256", 48: "ES384", 66: "ES512"}[size],
                        "use": "sig",
                    }
                )
        return {"keys": out}
