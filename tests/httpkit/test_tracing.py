"""Traces of the request side (config/httpkit/tracing.py): a SERVER span per request, through
Django or the fast lane, named after the route, with the request id; Django's span and the
statement and pool spans below it; and spans exported from a gunicorn worker, never the master."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from opentelemetry.trace import SpanKind

import config.wsgi  # imported untraced, before any test installs tracing
from config.httpkit import tracing as request_tracing
from config.multidb import tracing
from market.models import Product
from tests.support.ops import children, tcp_owners
from tests.support.pgcluster import wait_for
from tests.support.servers import cluster_env, http, test_database_urls
from tests.support.tracing import otlp_spans
from tests.support.wsgicall import call, environ

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)

DJANGO_SCOPE = "opentelemetry.instrumentation.django"


def traced_request(path: str, **extra) -> tuple[str, dict, bytes]:
    """One request through the whole traced WSGI application, fast lane first."""
    return call(config.wsgi.build(), environ(path, **extra))


def server_span(spans):
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    return server


def below(spans, parent) -> list:
    """Every span under `parent`, at any depth."""
    out, ids = [], {parent.context.span_id}
    for span in sorted(spans, key=lambda s: s.start_time):
        if span.parent is not None and span.parent.span_id in ids:
            out.append(span)
            ids.add(span.context.span_id)
    return out


def test_a_django_request_has_a_server_span_and_statements_tagged_below_it(traced_spans):
    Product.objects.create(sku="TRACE-1", name="Traced", price_cents=250, stock=3)
    traced_spans.clear()
    status, headers, _ = traced_request("/api/market/products/TRACE-1")
    assert status == "200 OK"
    spans = traced_spans.get_finished_spans()
    server = server_span(spans)
    assert server.name == "GET api/market/products/<sku>"
    assert server.attributes["http.route"] == "api/market/products/<sku>"
    assert server.attributes["request_id"] == headers["X-Request-ID"] == "test-request-1"
    assert server.parent is None and len({s.context.trace_id for s in spans}) == 1
    (django,) = [s for s in spans if s.instrumentation_scope.name == DJANGO_SCOPE]
    assert django.kind == SpanKind.INTERNAL and django.parent.span_id == server.context.span_id
    role = settings.APP_ROLE
    inside = below(spans, django)
    statements = [s for s in inside if s.instrumentation_scope.name == tracing.PSYCOPG_SCOPE]
    assert statements and all(s.attributes["db.alias"] == "market" for s in statements)
    assert {s.attributes["db.role"] for s in statements} == {role}
    assert any("market_product" in s.attributes["db.statement"] for s in statements)
    (acquire,) = [s for s in inside if s.name == "db.pool.acquire"]
    assert acquire.attributes["db.alias"] == "market" and acquire.attributes["db.role"] == role
    assert acquire.attributes["db.pool.wait_ms"] >= 0
    assert acquire.end_time <= min(s.start_time for s in statements)  # the wait comes first


def test_a_fast_lane_request_has_its_server_span_and_no_django_span(traced_spans):
    user = get_user_model().objects.create_user("trace-user")
    traced_spans.clear()
    status, _, body = traced_request(f"/api/users/{user.pk}")
    assert status == "200 OK" and b'"trace-user"' in body
    spans = traced_spans.get_finished_spans()
    server = server_span(spans)
    assert server.name == "GET api/users/<int:user_id>"
    assert server.attributes["http.route"] == "api/users/<int:user_id>"
    assert server.attributes["request_id"] == "test-request-1"
    assert not [s for s in spans if s.instrumentation_scope.name == DJANGO_SCOPE]  # Django never ran
    inside = below(spans, server)
    assert {s.attributes["db.alias"] for s in inside} == {"default"}
    assert {s.name for s in inside} >= {"db.pool.acquire", "SELECT"}


def test_the_server_span_continues_the_callers_trace(traced_spans):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced_request("/api/blog/posts", HTTP_TRACEPARENT=f"00-{trace_id}-{parent_id}-01")
    server = server_span(traced_spans.get_finished_spans())
    assert f"{server.context.trace_id:032x}" == trace_id and f"{server.parent.span_id:016x}" == parent_id
    assert server.name == "GET api/blog/posts"


def test_excluded_paths_get_no_span(traced_spans, monkeypatch):
    request_tracing.uninstall()
    monkeypatch.setenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "healthz,readyz")
    request_tracing.install()
    assert traced_request("/healthz")[0] == "200 OK"
    assert traced_spans.get_finished_spans() == ()
    traced_request("/api/blog/posts")
    assert server_span(traced_spans.get_finished_spans()).name == "GET api/blog/posts"


class Collector:
    """An OTLP/HTTP endpoint: records each export POST with the processes owning the sending socket."""

    def __init__(self):
        self.exports: list[tuple[set[int], bytes]] = []
        self.senders: list[int] = []  # processes that may send: set once gunicorn runs
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                port = self.client_address[1]
                owners = tcp_owners(collector.senders).get(port, set())
                collector.exports.append((owners, body) if self.path == "/v1/traces" else (set(), b""))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict]:
        return [span for _, body in self.exports for span in otlp_spans(body)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    running = Collector()
    yield running
    running.close()


@pytest.mark.parametrize("preload", [False, True], ids=["app-loaded-in-workers", "preload"])
def test_gunicorn_workers_export_their_spans_the_master_none(serve, collector, no_pools_of_our_own, preload):
    user = get_user_model().objects.create_user("exported-user")
    env = cluster_env(
        test_database_urls(),
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,  # no OTEL_TRACES_EXPORTER: the endpoint turns it on
        OTEL_SERVICE_NAME="platform-under-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    server = serve(env, workers=2, threads=2, args=("--preload",) if preload else ())
    master = server.proc.pid
    workers = children(master)
    collector.senders = [master, *workers]
    assert http("GET", server.url(f"/api/users/{user.pk}"))[0] == 200  # the fast lane
    assert http("GET", server.url("/api/blog/posts"))[0] == 200  # Django's path

    def both_exported():
        names = {s["name"] for s in collector.spans() if s["kind"] == 2}  # SERVER
        return {"GET api/users/<int:user_id>", "GET api/blog/posts"} <= names

    wait_for(both_exported, timeout=30, what="the two requests' server spans at the collector")
    senders = set().union(*(owners for owners, _ in collector.exports))
    assert senders and senders <= set(workers), (senders, master, workers)
    assert len(os.listdir(f"/proc/{master}/task")) == 1, "the master started a thread (an exporter?)"
    spans = collector.spans()
    assert {s["service"] for s in spans} == {"platform-under-test"}
    tagged = [s for s in spans if s["attributes"].get("db.alias") == "blog"]
    assert {s["attributes"]["db.role"] for s in tagged} == {"web"}  # gunicorn's connections
    assert {s["name"] for s in tagged} >= {"db.pool.acquire", "SELECT"}
