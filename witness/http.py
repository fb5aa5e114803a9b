"""The witness's HTTP routes (Flask): ``POST <prefix>/add-checkpoint`` and the extension
``GET <prefix>/checkpoint?origin=``. See :mod:`witness`."""

from __future__ import annotations

from flask import Flask, Response, request

from .core import MAX_BODY, Witness

__all__ = ["create_app"]


def create_app(witness: Witness, prefix: str = "") -> Flask:
    app = Flask("witness")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    prefix = prefix.rstrip("/")

    @app.post(f"{prefix}/add-checkpoint")
    def add_checkpoint():
        data = request.get_data(cache=False)
        r = witness.add_checkpoint(data)
        return Response(r.body, status=r.status, content_type=r.content_type)

    @app.get(f"{prefix}/checkpoint")
    def checkpoint():
        origin = request.args.get("origin", "")
        got = witness.latest(origin)
        if got is None:
            return Response("no checkpoint for this origin\n", status=404, content_type="text/plain; charset=utf-8")
        return Response(got[2], status=200, content_type="text/plain; charset=utf-8")

    return app
