"""An HTTP issuing endpoint (Flask) in front of :class:`issuer.service.Issuer`.

    GET  /challenge   -> 200 {"nonce": <b64url 32 bytes>, "expires": <unix>} (single use, 120 s)
    POST /issue       {"ear": <EAR JWT>, "workload_id": ..., "jwk": <workload public JWK with alg>,
                       "format": "wit" | "x509-svid", "nonce": <from /challenge, when the policy binds nonces>}
                      -> 201 {"credential": <WIT or PEM>, "record_id", "record_locator",
                              "transparent_statement": <b64url COSE>, "entry": <log entry URL>}
                      -> 403 {"error": check, "detail"} when the appraisal or issuance policy refuses
                      -> 503 when the provenance record could not be registered (no credential)
    GET  /records/<rid> -> the encrypted private record (COSE_Encrypt0), for auditors holding the key

Authentication of callers is out of scope (put it behind mTLS); the EAR is the admission.
"""

from __future__ import annotations

import secrets
import threading
import time

from flask import Flask, Response, jsonify, request
from cryptography.hazmat.primitives import serialization

from verifier.credential import b64url

from .appraisal import public_key_from_jwk
from .errors import IssuerError
from .service import Issuer

NONCE_TTL = 120


def create_app(issuer: Issuer) -> Flask:
    app = Flask("twi-issuer")
    nonces: dict[str, float] = {}
    lock = threading.Lock()

    @app.get("/challenge")
    def challenge():
        n = b64url(secrets.token_bytes(32))
        now = time.time()
        with lock:
            for k in [k for k, t in nonces.items() if t < now]:
                del nonces[k]
            nonces[n] = now + NONCE_TTL
        return jsonify(nonce=n, expires=int(now + NONCE_TTL))

    @app.post("/issue")
    def issue():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("ear"), str) or not isinstance(body.get("jwk"), dict):
            return jsonify(error="request.malformed", detail="need ear (string), workload_id and jwk"), 400
        nonce = body.get("nonce")
        if nonce is not None:
            with lock:
                exp = nonces.pop(nonce, None)
            if exp is None or exp < time.time():
                return jsonify(error="request.nonce", detail="unknown or expired challenge"), 403
        try:
            pub = public_key_from_jwk(body["jwk"])
            out = issuer.issue(ear=body["ear"], workload_id=str(body.get("workload_id", "")), workload_key=pub,
                               fmt=str(body.get("format", "wit")), nonce=nonce)
        except IssuerError as e:
            status = 503 if e.check == "issuance.unregistered" else 403
            return jsonify(error=e.check, detail=e.detail), status
        cred = out.credential
        text = cred.raw.decode() if cred.format == "wit" else cred.cert.public_bytes(serialization.Encoding.PEM).decode()
        return jsonify(credential=text, format=cred.format, record_id=out.rid,
                       record_locator=issuer.record_locator(out.rid),
                       transparent_statement=b64url(out.registration.transparent_statement),
                       entry=out.registration.entry_url), 201

    @app.get("/records/<path:rid>")
    def record(rid: str):
        if issuer.vault is None:
            return jsonify(error="vault.none"), 404
        p = issuer.vault.path(rid)
        if not p.is_file():
            return jsonify(error="vault.missing"), 404
        return Response(p.read_bytes(), mimetype="application/cose; cose-type=\"cose-encrypt0\"")

    return app
