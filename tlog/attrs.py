"""Entry ids and the lookup attributes the log records with each entry (``kind``, ``policy``,
``iss``, ``iss-sub``, ``payload-sha256``; a personality's, e.g. TWI's, are in :mod:`tlog.twi.index`).

Entry ids: the lowercase hex of the leaf input (SHA-256 of the statement bytes, 64 characters).
"""

from __future__ import annotations

import json
import re

__all__ = ["ATTR_KIND", "ATTR_POLICY", "ATTR_ISS", "ATTR_SUB", "ATTR_ISS_SUB", "ATTR_PAYLOAD_HASH",
           "entry_id_of", "iss_sub_key"]

ATTR_KIND = "kind"
ATTR_POLICY = "policy"
ATTR_ISS = "iss"
ATTR_SUB = "sub"
ATTR_ISS_SUB = "iss-sub"
ATTR_PAYLOAD_HASH = "payload-sha256"


def entry_id_of(leaf_input: bytes) -> str:
    return leaf_input.hex()


_JSON_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f-\U0010ffff]*')  # no escapes needed, ASCII


def iss_sub_key(iss: str, sub: str) -> str:
    """The lookup key of (iss, sub): the compact JSON array ``["iss","sub"]``."""
    if _JSON_PLAIN.fullmatch(iss) and _JSON_PLAIN.fullmatch(sub):
        return '["' + iss + '","' + sub + '"]'  # what json.dumps gives for these strings
    return json.dumps([iss, sub], separators=(",", ":"), ensure_ascii=False)
