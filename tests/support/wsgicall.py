"""Calling a WSGI app in-process as gunicorn would: one environ builder and one caller for the
tests that compare the fast lane with Django's answers."""

from __future__ import annotations

import io
import sys

from django.db import connections

from tests.support.topology import ALIASES


def environ(path: str, method: str = "GET", host: str = "127.0.0.1", body: bytes = b"", **extra) -> dict:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        # One id for both paths, so the lane's and Django's answers compare byte for byte.
        "HTTP_X_REQUEST_ID": "test-request-1",
    }
    if body:
        env.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    env.update(extra)
    return env


def call(app, env: dict) -> tuple[str, dict, bytes] | None:
    """(status, headers, body), or None when the app stepped aside (the fast lane)."""
    for alias in ALIASES:
        connections[alias].close()  # as between two requests (the test's own work left them open)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    answer = app(env, start_response)
    if answer is None:
        return None
    body = b"".join(answer)
    getattr(answer, "close", lambda: None)()  # Django's request_finished
    return seen["status"], seen["headers"], body
