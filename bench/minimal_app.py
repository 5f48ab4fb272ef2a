"""The smallest WSGI app that answers like the API: the baseline the stack itself allows.

Served by the same gunicorn settings (task_manager.gunicorn_conf) behind a copy of the
same nginx site, so the API's figures read as a ratio to it.
"""

import json


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.dumps({"received": len(environ["wsgi.input"].read(length))}).encode()
        status = "201 CREATED"
    else:
        body = b'{"tasks": [], "total": 0}'
        status = "200 OK"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
