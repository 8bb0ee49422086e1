"""Real faults against a real gunicorn: each database that gets faulted lives in a
cluster of its own, so freezing it freezes nothing else (fixtures in
tests/scenarios/faults/conftest.py); a site, its seed, background load, and the
answer a fault must give.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.support.pgcluster import PgCluster, wait_for
from tests.support.servers import ROOT, Gunicorn, cluster_env, http, migrate

HTTP_TIMEOUT_S = 20  # far above any bound the app promises: hitting it means a hang
SKU = "FAULT-1"
SKUS = [f"FAULT-{i}" for i in range(1, 9)]

# The settings the faults run with: shipped defaults, except a shorter statement
# timeout so the slow-query and in-flight cases finish quickly.
FAULT_ENV = {
    "MARKET_DATABASE_STATEMENT_TIMEOUT_MS": "1500",
    "MARKET_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS": "1000",
    "SHARED_DATABASE_STATEMENT_TIMEOUT_MS": "1500",
}


def manage_out(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@dataclass
class Site:
    clusters: dict[str, PgCluster]
    env: dict[str, str]
    server: Gunicorn
    token: str = ""
    post_slug: str = ""
    user_id: int = 0
    stats: Counter = field(default_factory=Counter)

    def get(self, path: str, **kw):
        return http("GET", self.server.url(path), timeout=HTTP_TIMEOUT_S, **kw)

    def post(self, path: str, body: dict, **kw):
        headers = {"Authorization": f"Token {self.token}", **kw.pop("headers", {})}
        return http("POST", self.server.url(path), body, headers=headers, timeout=HTTP_TIMEOUT_S, **kw)

    def blog(self):
        return self.get("/api/blog/posts")

    def product(self, sku: str = SKU):
        return self.get(f"/api/market/products/{sku}")

    def order(self, sku: str = SKU):
        return self.post("/api/market/orders", {"items": [{"sku": sku, "quantity": 1}]})

    def wait_healthy(self, what: str = "every database to answer") -> None:
        wait_for(
            lambda: self.product()[0] == 200 and self.blog()[0] == 200 and self.get("/readyz")[0] == 200,
            timeout=30,
            interval=0.1,
            what=what,
        )


def _seed(site: Site) -> None:
    env = site.env
    manage_out(env, "createsuperuser", "--noinput", "--username", "faultstaff", "--email", "staff@example.com")
    site.token = manage_out(env, "create_api_token", "faultstaff").strip().splitlines()[-1]
    for sku in SKUS:
        status, body, _ = site.post(
            "/api/market/products", {"sku": sku, "name": f"Fault {sku}", "price_cents": 100, "stock": 1_000_000}
        )
        assert status == 201, body
    status, body, _ = site.post("/api/blog/posts", {"title": "Faults", "body": "They happen.", "status": "published"})
    assert status == 201, body
    site.post_slug = body["data"]["slug"]
    site.user_id = body["data"]["author"]["id"]


def site(layout: dict[str, tuple[str, ...]], **extra_env: str):
    """Clusters per `layout` ({cluster name: (prefixes of the databases it holds)}), migrated,
    seeded, with gunicorn (1 worker, shipped thread count) in front."""
    clusters: dict[str, PgCluster] = {}
    server = None
    try:
        urls = {}
        for name, prefixes in layout.items():
            cluster = clusters[name] = PgCluster(name).start()
            for prefix in prefixes:
                urls[prefix] = cluster.create_database(f"fault_{prefix.lower()}")
        env = cluster_env(urls, **{**FAULT_ENV, **extra_env})
        migrate(env)
        server = Gunicorn(env, workers=1, threads=8).start()
        site = Site(clusters, env, server)
        _seed(site)
        yield site
    finally:
        if server is not None:
            server.stop()
        for cluster in clusters.values():
            cluster.destroy()


def in_parallel(calls, workers: int = 16) -> list:
    """Run zero-argument callables at once; results in order."""
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda f: f(), calls))


class Load:
    """Background clients hitting `fn` in a loop until stopped; every answer is kept."""

    def __init__(self, fn, clients: int = 2):
        self.fn = fn
        self.results: list[tuple[int, object]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _run(self):
        while not self._stop.is_set():
            try:
                status, body, _ = self.fn()
            except OSError as exc:  # a reset or a client timeout: a failure the test will report
                status, body = 0, repr(exc)
            with self._lock:
                self.results.append((status, body))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(HTTP_TIMEOUT_S + 5)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def statuses(self) -> Counter:
        with self._lock:
            return Counter(s for s, _ in self.results)


def assert_unavailable(status, body, database: str) -> None:
    """A clean `503 database_unavailable` naming `database`."""
    assert status == 503, (status, body)
    assert body["error"]["code"] == "database_unavailable", body
    assert body["error"]["database"] == database, json.dumps(body)
