"""Baseline for tools/loadgen.py: a bare Flask POST endpoint, served exactly like the log.

    granian --interface rsgi --factory --workers 1 --port 8001 'tools.bare_flask:rsgi_app'   # as tlog serve
    gunicorn -k gthread --workers 1 --threads 16 -b 127.0.0.1:8001 'tools.bare_flask:app'      # for comparison

POST /entries reads the body and answers 201 with a receipt-sized body and a Location header;
nothing is parsed, verified or stored. The ratio log/bare measures what the log adds.
"""

from __future__ import annotations

import hashlib
import os
import sys

from flask import Flask, Response, request

# the same interpreter setting as tlog/server/wsgi.py, so the two are served the same way
sys.setswitchinterval(float(os.environ.get("TLOG_SWITCH_INTERVAL", "0.0005")))

app = Flask("bare")
_BODY = b"\x00" * 212  # about the size of a receipt for a small tree


@app.post("/entries")
def entries():
    body = request.get_data(cache=False)
    resp = Response(_BODY, status=201, mimetype="application/cose")
    resp.headers["Location"] = "/entries/" + hashlib.sha256(body).hexdigest()
    return resp


@app.get("/health")
def health():
    return {"status": "ok"}


def rsgi_app():
    """The same app under the production server's adapter (serving.httpd), TLOG_THREADS threads."""
    from serving.httpd import WSGIOverRSGI

    return WSGIOverRSGI(app, threads=int(os.environ.get("TLOG_THREADS", "16")), max_body=(1 << 20) + 4096)
