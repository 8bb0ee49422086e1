"""/metrics with several gunicorn workers: one merged view, no database query to build it."""

import os
import re
import signal

from tests.support.ops import children, uses_test_databases
from tests.support.pgcluster import wait_for
from tests.support.servers import http

ALIASES = ("default", "default_jobs", "blog", "blog_jobs", "market", "market_jobs")
POOL_SERIES = (
    "platform_db_pool_size",
    "platform_db_pool_available",
    "platform_db_pool_waiting",
    "platform_db_pool_max_size",
    "platform_db_pool_requests_total",
    "platform_db_pool_timeouts_total",
    "platform_db_pool_connection_errors_total",
    "platform_db_pool_connections_lost_total",
    "platform_db_pool_wait_seconds_total",
    "platform_db_breaker_state",
)
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def scrape(server) -> dict[tuple[str, frozenset], float]:
    status, text, headers = http("GET", server.url("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(tuple(kv.split("=", 1)) for kv in re.findall(r'\w+="[^"]*"', m.group(2)))
            samples[(m.group(1), frozenset((k, v.strip('"')) for k, v in labels))] = float(m.group(3))
    return samples


def value(samples, name, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_until(server, predicate, what: str):
    """Scrape until `predicate(samples)` holds (workers refresh their pool gauges once a second)."""

    def attempt():
        samples = scrape(server)
        return samples if predicate(samples) else None

    return wait_for(attempt, timeout=30, what=what)


def stale_sample(directory, alias: str, value: float) -> None:
    """A live-gauge file left by an earlier run (pid 99999) in a reused PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    name = "platform_db_pool_max_size"
    stale = MmapedDict(str(directory / "gauge_livesum_99999.db"))
    stale.write_value(mmap_key(name, name, ["alias"], [alias], "stale"), value, 0.0)
    stale.close()


@uses_test_databases
def test_metrics_merge_every_worker_and_forget_dead_ones(ops_env, serve, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale_sample(metrics_dir, "default", 100.0)
    env = {
        **ops_env,
        "SHARED_DATABASE_POOL_MAX_SIZE": "3",
        "BLOG_DATABASE_POOL_MAX_SIZE": "5",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    server = serve(env, workers=2, threads=4)
    assert not (metrics_dir / "gauge_livesum_99999.db").exists()  # an earlier run's samples are wiped
    for _ in range(10):
        assert http("GET", server.url("/readyz"))[0] == 200
    for _ in range(7):
        assert http("GET", server.url("/api/users/999999"))[0] == 404

    # Gauges are summed over live workers: both have reported once max_size is 2 x 3 for default.
    samples = scrape_until(
        server, lambda s: value(s, "platform_db_pool_max_size", alias="default") == 6, "both workers' pool gauges"
    )
    for name in POOL_SERIES:
        for alias in ALIASES:
            assert value(samples, name, alias=alias) is not None, f"{name}{{alias={alias}}} missing"
    assert value(samples, "platform_db_pool_max_size", alias="blog") == 10
    assert value(samples, "platform_db_pool_max_size", alias="market_jobs") == 4  # JOBS_DATABASE_POOL_MAX_SIZE 2
    assert value(samples, "platform_db_pool_size", alias="default") >= 1  # /readyz borrowed from it
    assert value(samples, "platform_db_pool_requests_total", alias="default") >= 10 + 7

    # Counters are summed over processes, exactly.
    assert value(samples, "platform_http_requests_total", domain="users", status="404") == 7
    assert value(samples, "platform_http_requests_total", domain="ops", status="200") >= 10  # + healthz, scrapes
    assert value(samples, "platform_http_request_duration_seconds_count", domain="users", status="404") == 7
    hold = value(samples, "platform_db_connection_hold_seconds_count", route="api/users/<int:user_id>", alias="default")
    assert hold == 7  # each request checked out one connection of `default`

    # A worker that dies takes its gauges along; its counters stay.
    victim = children(server.proc.pid)[0]
    os.kill(victim, signal.SIGTERM)

    def replaced_and_reporting():
        pids = children(server.proc.pid)
        return (
            victim not in pids
            and len(pids) == 2
            and all((metrics_dir / f"gauge_livesum_{p}.db").exists() for p in pids)
        )

    wait_for(replaced_and_reporting, timeout=30, what="the replacement worker to report")
    assert not (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    after = scrape_until(
        server, lambda s: value(s, "platform_db_pool_max_size", alias="default") == 6, "gauges of the live workers only"
    )
    assert value(after, "platform_http_requests_total", domain="users", status="404") == 7


@uses_test_databases
def test_with_a_metrics_token_only_a_scraper_that_sends_it_reads_metrics(ops_env, serve):
    token = "scrape-Tok3n-never-shown"
    server = serve({**ops_env, "METRICS_TOKEN": token}, workers=1, threads=2)

    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {token}"},
        {"Authorization": f"Bearer {token[:-1]}"},
    ):
        status, body, hdrs = http("GET", server.url("/metrics"), headers=headers)
        assert status == 401, headers
        assert body["error"]["code"] == "not_authenticated"
        assert hdrs["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert token not in str(body)
    status, text, hdrs = http("GET", server.url("/metrics"), headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and hdrs["Content-Type"].startswith("text/plain")
    assert "platform_db_pool_size" in text
    # The probes stay open: load balancers and orchestrators do not carry the token.
    assert http("GET", server.url("/readyz"))[0] == 200 and http("GET", server.url("/healthz"))[0] == 200
    assert token not in server.output()
