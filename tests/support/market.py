"""Market test helpers (fixtures in tests/market/conftest.py): users with API tokens, a JSON client, and a way to run
work in real threads that each use (and give back) their own pooled connections."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from tests.support.perms import grant

THREADS = 8


class Api:
    """django.test.Client speaking JSON with a token; one per thread (Client is not thread-safe)."""

    def __init__(self, token: str | None = None):
        self.client = Client()
        self.token = token

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None):
        return self.client.get(path, headers=self._headers(headers))

    def post(
        self, path: str, body: Any = None, *, raw: bytes | str | None = None, headers: dict[str, str] | None = None
    ):
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data=data, content_type="application/json", headers=self._headers(headers))


def make_user(username: str, *, staff: bool = False, superuser: bool = False, perms: tuple[str, ...] = ()):
    user = get_user_model().objects.create_user(
        username=username, password="pw-not-used-here", is_staff=staff or superuser, is_superuser=superuser
    )
    grant(user, *perms)
    return user


OPERATOR_PERMS = (
    "market.add_product",
    "market.add_account",
    "market.view_account",
    "market.view_order",
    "market.transfer_any_account",
)


def run_threads(worker: Callable[[int], Any], n: int = THREADS, timeout: float = 120) -> list[Any]:
    """Run worker(i) in n threads released together; returns results (or the exceptions raised).

    The caller's own connections are given back first, so every pool has room
    for the threads; each thread gives its connections back when it ends.
    """
    connections.close_all()
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = worker(i)
        except BaseException as exc:  # reported to the test, which asserts on it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), name=f"market-worker-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker thread is stuck"
    return results


def released(fn: Callable[[], Any]) -> Any:
    """Call fn like one web request would: its connections go back to the pools afterwards."""
    try:
        return fn()
    finally:
        connections.close_all()
