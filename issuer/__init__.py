"""TWI credential issuer: attestation-gated credentials with provenance in the log.

Flow (see docs/credential-provenance.md):

1. :mod:`issuer.appraisal` verifies an EAR attestation result against the configured
   verifier keys and the appraisal policy;
2. :mod:`issuer.credentials` mints a WIT or an X.509 SVID carrying a pointer to a
   pre-allocated Credential Provenance record id;
3. :mod:`issuer.provenance` builds the Credential Provenance record (and, once per
   workload instance, the Workload Provenance statement) as SCITT Signed Statements;
4. :mod:`issuer.client` (:mod:`verifier.scrapi` raising :class:`IssuerError`) registers them
   over SCRAPI; :mod:`issuer.service` only releases a credential whose provenance record has a
   verified receipt.
"""

from .errors import IssuerError

__all__ = ["IssuerError"]
