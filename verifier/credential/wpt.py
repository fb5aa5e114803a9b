"""The WIMSE Workload Proof Token (draft-ietf-wimse-s2s-protocol, WPT): proof that the presenter
of a WIT holds the private key its ``cnf.jwk`` names, for one request.

Checked (``wpt.*``): ``typ`` ``wpt+jwt``; ``alg`` = the ``cnf.jwk`` ``alg`` (never ``none`` or
HMAC); the signature under ``cnf.jwk``; ``wth`` = base64url SHA-256 of the WIT's ASCII bytes (the
same digest the Credential Provenance record names, in hex); ``exp`` present and not passed (with
leeway), ``iat`` not in the future; ``jti`` present; ``aud`` = the expected audience when one is
given. Request-binding claims (``ath``, ``tth``, ``oth``) belong to the HTTP exchange, not to the
credential, and are not checked here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import VerificationError
from .parse import CredentialInfo
from .wire import WPT_TYP, b64url


def verify_wpt(token: bytes | str, info: CredentialInfo, *, now: float, audience: str | None = None,
               leeway: int = 60) -> dict[str, Any]:
    """Verify a WPT for the WIT ``info``; returns its claims or raises ``wpt.*``."""
    import jwt

    if info.format != "wit":
        raise VerificationError("wpt.credential", "a WPT accompanies a WIT, not an X.509 SVID")
    tok = token.decode("ascii", "replace").strip() if isinstance(token, bytes) else token.strip()
    try:
        header = jwt.get_unverified_header(tok)
    except jwt.PyJWTError as e:
        raise VerificationError("wpt.malformed", f"not a JWS: {e}") from None
    if header.get("typ") != WPT_TYP:
        raise VerificationError("wpt.typ", f"WPT typ must be {WPT_TYP}, not {header.get('typ')!r}")
    jwk = ((info.claims.get("cnf") or {}).get("jwk")) or {}
    alg = header.get("alg")
    if not isinstance(alg, str) or alg == "none" or alg.startswith("HS") or alg != jwk.get("alg"):
        raise VerificationError("wpt.alg", f"WPT alg {alg!r} is not the WIT's cnf.jwk alg {jwk.get('alg')!r}")
    try:
        key = jwt.PyJWK(dict(jwk)).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as e:
        raise VerificationError("wpt.key", f"cnf.jwk is not a usable key: {e}") from None
    try:
        claims = jwt.decode(tok, key, algorithms=[alg],
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                     "verify_aud": False, "require": []})
    except jwt.InvalidSignatureError:
        raise VerificationError("wpt.signature", "the WPT is not signed by the WIT's cnf key") from None
    except jwt.PyJWTError as e:
        raise VerificationError("wpt.malformed", str(e)) from None
    want = b64url(hashlib.sha256(info.raw).digest())
    if claims.get("wth") != want:
        raise VerificationError("wpt.wth", "the WPT's wth is not the SHA-256 of this WIT")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise VerificationError("wpt.exp", "the WPT has no integer exp")
    if now >= exp + leeway:
        raise VerificationError("wpt.expired", "the WPT has expired")
    iat = claims.get("iat")
    if isinstance(iat, int) and not isinstance(iat, bool) and iat > now + leeway:
        raise VerificationError("wpt.iat", "the WPT is issued in the future")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise VerificationError("wpt.jti", "the WPT has no jti")
    aud = claims.get("aud")
    if not (isinstance(aud, str) or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))):
        raise VerificationError("wpt.aud", "the WPT has no aud")
    if audience is not None and audience not in ([aud] if isinstance(aud, str) else aud):
        raise VerificationError("wpt.aud", f"the WPT is for {json.dumps(aud)}, not {audience!r}")
    return claims
