"""A JSON client for the blog's API tests (fixtures in tests/blog/conftest.py)."""

from __future__ import annotations

import json

from django.test import Client


class Api:
    """A JSON client: `api.post(path, data, token=...)` -> (status, parsed body)."""

    def __init__(self):
        self.client = Client()

    def _call(
        self, method: str, path: str, data=None, *, token: str | None = None, raw: bytes | str | None = None, **query
    ):
        headers = {"Authorization": f"Token {token}"} if token else {}
        body = raw if raw is not None else (json.dumps(data) if data is not None else None)
        kwargs = {"headers": headers}
        if method == "get":
            response = self.client.get(path, query or None, **kwargs)
        else:
            response = getattr(self.client, method)(path, body, content_type="application/json", **kwargs)
        self.last = response
        return response.status_code, (response.json() if response.content else None)

    def get(self, path, *, token=None, **query):
        return self._call("get", path, token=token, **query)

    def post(self, path, data=None, *, token=None, raw=None):
        return self._call("post", path, data, token=token, raw=raw)

    def patch(self, path, data=None, *, token=None, raw=None):
        return self._call("patch", path, data, token=token, raw=raw)

    def put(self, path, data=None, *, token=None):
        return self._call("put", path, data, token=token)

    def delete(self, path, *, token=None):
        return self._call("delete", path, token=token)
