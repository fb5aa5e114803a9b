"""What the log's and the witness's servers share, and nothing of either actor: the production
HTTP server (:mod:`serving.httpd`: granian in front of a WSGI app, header and body timeouts, bodies
read outside Python threads) and the process-wide log line format (:mod:`serving.logs`).

It imports nothing of ours, so the witness (``witness/``, which runs on other hosts) can be
served the same way as the log without importing ``tlog/``.
"""
