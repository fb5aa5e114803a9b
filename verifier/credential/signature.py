"""The credential's own signature and validity: WIT (JWS by a trusted issuer key), X.509 SVID (by a trusted CA)."""

from __future__ import annotations

from ..errors import VerificationError
from .parse import CredentialInfo
from .trust import TrustConfig
from .wire import b64url_decode


def verify_wit_signature(info: CredentialInfo, trust: TrustConfig, now: float, check_time: bool, leeway: int):
    """Check the WIT's JWS with the trusted issuer keys; returns the key that verified it."""
    import jwt

    keys = trust.statement_keys()
    kid = info.header.get("kid")
    cands = []
    if isinstance(kid, str):
        try:
            k = keys.get(b64url_decode(kid))
        except VerificationError:
            k = None
        if k is not None:
            cands = [k]
    if not cands:
        cands = list(keys.values())
    if not cands:
        raise VerificationError("credential.no-issuer-key", "no issuer keys configured")
    alg = info.header.get("alg")
    for key in cands:
        try:
            jwt.decode(info.raw.decode("ascii"), key, algorithms=[alg],
                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False})
            break
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError, NotImplementedError, TypeError, ValueError):
            continue
        except jwt.PyJWTError as e:
            raise VerificationError("credential.malformed", str(e)) from None
    else:
        raise VerificationError("credential.signature", "the WIT is not signed by a trusted issuer key")
    if check_time:
        if info.exp is not None and now >= info.exp + leeway:
            raise VerificationError("credential.expired", "the WIT has expired")
        nbf = info.claims.get("nbf")
        if isinstance(nbf, int) and nbf > now + leeway:
            raise VerificationError("credential.not-yet-valid", "the WIT is not yet valid")
    return key


def verify_x509_signature(info: CredentialInfo, trust: TrustConfig, now: float, check_time: bool, leeway: int):
    """Check the SVID against the trusted CAs; returns the public key of the CA that issued it."""
    if not trust.ca_certs:
        raise VerificationError("credential.no-ca", "no CA certificates configured for X.509 SVIDs")
    for ca in trust.ca_certs:
        try:
            if ca.subject != info.cert.issuer:
                continue
        except Exception:  # undecodable issuer name
            raise VerificationError("credential.malformed", "cannot decode the certificate's issuer") from None
        try:
            info.cert.verify_directly_issued_by(ca)
            break
        except Exception:  # InvalidSignature, ValueError, TypeError
            continue
    else:
        raise VerificationError("credential.signature", "the SVID is not signed by a trusted CA")
    if check_time and not (info.nbf - leeway <= now < info.exp + leeway):
        raise VerificationError("credential.expired", "the SVID is outside its validity period")
    return ca.public_key()
