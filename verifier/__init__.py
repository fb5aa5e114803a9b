"""TWI provenance verifier: the codecs and checks relying parties and monitors run.

This package depends on nothing else in the repository; the log (``tlog``) and the
issuer (``issuer``) import it for the wire formats and the proof arithmetic.
"""

from .errors import VerificationError

__all__ = ["VerificationError"]
