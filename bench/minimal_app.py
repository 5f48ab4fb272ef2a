"""The smallest apps that answer like the API: the baselines the stack itself allows.

`app` is a bare WSGI callable (what nginx and gunicorn alone allow); `flask_app` is Flask
with one route for each method (what the framework allows: the ceiling issue 17 judges the
API against). Each is served by the same gunicorn settings (task_manager.gunicorn_conf)
behind a copy of the same nginx site, so the API's figures read as a ratio to them.
"""

import json

from flask import Flask, request


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


flask_app = Flask("minimal")


@flask_app.get("/api/tasks")
def minimal_list():
    return {"tasks": [], "total": 0}


@flask_app.post("/api/tasks")
def minimal_create():
    return {"received": len(request.get_data())}, 201
