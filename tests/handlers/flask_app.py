"""A small Flask application for tests/functional/test_wsgi_apps.py."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request, send_file

app = Flask(__name__)


@app.get("/")
def index():
    return "flask index"


@app.get("/items/<int:number>")
def item(number: int):
    return jsonify(item=number, args=request.args.to_dict())


@app.post("/form")
def form():
    return jsonify(form=request.form.to_dict(), scheme=request.scheme, remote=request.remote_addr)


@app.post("/json")
def json_body():
    return jsonify(received=request.get_json(), length=request.content_length)


@app.get("/stream")
def stream():
    return Response((b"row %d\n" % index for index in range(50)), mimetype="text/plain")


@app.get("/file")
def file():
    return send_file(os.environ["FLASK_FILE"], mimetype="application/octet-stream")
