"""Traces of the database side (config/multidb/tracing.py): off unless OTEL_* ask, and then
nothing installed; on, statement spans and pool checkouts tagged with alias and role, and
no SQL comment reaching the server (prepared statements still prepared)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from config.multidb import tracing
from config.multidb.conf import databases as topology
from config.multidb.conf.env import ConfigError
from config.multidb.lifecycle import close_all_pools
from tests.support.project import ROOT, manage, project_env
from tests.support.servers import test_database_urls
from tests.support.tracing import spans_of

DATABASES = ["default", "blog", "market", "market_jobs"]
PSYCOPG = tracing.PSYCOPG_SCOPE
pytestmark_db = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, [tracing.OTLP, "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, [tracing.OTLP]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, [tracing.OTLP]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [tracing.OTLP]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, []),
        ({"OTEL_SERVICE_NAME": "shop", "OTEL_TRACES_SAMPLER": "always_on"}, []),  # no exporter: off
    ],
)
def test_the_standard_variables_turn_it_on(environ, expected):
    assert tracing.exporter_names(environ) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER names an exporter that is not installed"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is installed",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: only http/protobuf is installed",
        ),
    ],
)
def test_an_exporter_that_is_not_installed_is_refused_naming_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        tracing.exporter_names(environ)


STANDARD = {
    "OTEL_SERVICE_NAME": "shop",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces",
    "OTEL_EXPORTER_OTLP_HEADERS": "x-key=1",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
    "OTEL_BSP_SCHEDULE_DELAY": "1000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "2048",
    "OTEL_SDK_DISABLED": "false",
    "OTEL_PROPAGATORS": "tracecontext,baggage",
    "OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "healthz",
    "OTEL_PYTHON_EXCLUDED_URLS": "metrics",
}


def test_the_strict_environment_check_accepts_the_standard_variables(monkeypatch):
    for key, value in STANDARD.items():
        monkeypatch.setenv(key, value)
    topology.read_all()  # raises ConfigError on a variable that looks like ours but is not
    monkeypatch.setenv("BLGO_DATABASE_URL", "postgres://x@127.0.0.1/y")  # the check is still on
    with pytest.raises(ConfigError, match="did you mean BLOG_DATABASE_URL"):
        topology.read_all()


def test_manage_py_stops_on_an_exporter_that_is_not_installed():
    result = manage("check", env=project_env(OTEL_TRACES_EXPORTER="zipkin"))
    assert result.returncode == 2
    assert "configuration error: OTEL_TRACES_EXPORTER names an exporter that is not installed" in result.stderr


OFF_PROBE = """
import json, sys
import config.wsgi
from django.conf import settings
print(json.dumps({
    "otel_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    "middleware": [m for m in settings.MIDDLEWARE + settings.API_MIDDLEWARE if "opentelemetry" in m],
    "app": config.wsgi.application.__qualname__,
}))
"""


def test_off_by_default_nothing_is_installed_or_even_imported():
    env = project_env(DJANGO_SETTINGS_MODULE="config.settings.base")
    for key in [k for k in env if k.startswith("OTEL_")]:
        env.pop(key)
    result = subprocess.run(
        [sys.executable, "-c", OFF_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == {"otel_modules": [], "middleware": [], "app": "dispatcher.<locals>.application"}


@pytestmark_db
def test_on_in_a_command_its_statements_are_exported_under_one_span_tagged_with_alias_and_role():
    urls = test_database_urls()
    env = project_env(OTEL_TRACES_EXPORTER="console", **{f"{prefix}_DATABASE_URL": url for prefix, url in urls.items()})
    env.pop("APP_ROLE", None)  # a command: cli
    result = manage("dbstat", "--json", env=env)
    assert result.returncode == 0, result.stderr
    printed, decoder, text, at = [], json.JSONDecoder(), result.stdout, result.stdout.find("{\n")
    while at >= 0:
        thing, end = decoder.raw_decode(text, at)
        printed.append(thing)
        at = text.find("{\n", end)
    spans = [thing for thing in printed if "context" in thing]  # the console exporter's, after dbstat's own
    (command,) = [s for s in spans if s["name"] == "manage.py dbstat"]
    assert command["parent_id"] is None
    assert command["resource"]["attributes"]["service.name"] == tracing.DEFAULT_SERVICE_NAME
    children = [s for s in spans if s["parent_id"] == command["context"]["span_id"]]
    for alias in ("blog", "market"):
        tagged = [s for s in children if s["attributes"].get("db.alias") == alias]
        assert {s["name"] for s in tagged} == {"db.pool.acquire", "SELECT"}
        assert {s["attributes"]["db.role"] for s in tagged} == {"cli"}
    assert all("/*" not in s["attributes"]["db.statement"] for s in spans if "db.statement" in s["attributes"])


@pytestmark_db
def test_statements_carry_alias_and_role_and_a_checkout_its_pool_wait(traced_spans):
    from opentelemetry import trace

    tracer = tracing.provider().get_tracer("test")
    with tracer.start_as_current_span("work") as work:
        for alias in ("blog", "market_jobs"):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            connections[alias].close()
    spans = spans_of(traced_spans, work.get_span_context().trace_id)
    for alias, role in (("blog", settings.APP_ROLE), ("market_jobs", "jobs")):
        label = settings.DATABASES[alias]["OPTIONS"]["application_name"]
        assert label == f"{role}:{alias.removesuffix('_jobs')}"
        (acquire,) = [s for s in spans if s.name == "db.pool.acquire" and s.attributes["db.alias"] == alias]
        assert acquire.attributes["db.role"] == role
        assert acquire.attributes["db.client.connection.pool.name"] == label
        assert acquire.attributes["db.pool.wait_ms"] >= 0
        assert acquire.parent.span_id == work.get_span_context().span_id
        (statement,) = [
            s for s in spans if s.instrumentation_scope.name == PSYCOPG and s.attributes.get("db.alias") == alias
        ]
        assert statement.attributes["db.statement"] == "SELECT 1" and statement.attributes["db.role"] == role
        assert statement.kind == trace.SpanKind.CLIENT and statement.parent.span_id == work.get_span_context().span_id


def _received(cursor) -> str:
    """The text of this very statement as the server received it."""
    cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    return cursor.fetchone()[0]


@pytestmark_db
def test_the_server_receives_no_sql_comment_and_still_prepares_statements(traced_spans):
    tracer = tracing.provider().get_tracer("test")
    with tracer.start_as_current_span("request"), connections["blog"].cursor() as cursor:
        assert _received(cursor) == "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        for n in range(topology.PREPARE_AFTER + 1):
            cursor.execute("SELECT %s::int + 1", [n])
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int + 1%%'")
        assert cursor.fetchone()[0] == 1  # a comment with the trace id would make each text new
    connections["blog"].close()
    assert any(s.instrumentation_scope.name == PSYCOPG for s in traced_spans.get_finished_spans())


@pytestmark_db
def test_the_comment_check_sees_a_comment_when_there_is_one(traced_spans):
    # The same probe on a connection instrumented with the commenter on: what the check above would catch.
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    url = test_database_urls()["BLOG"]
    with psycopg.connect(url, autocommit=True) as conn:
        PsycopgInstrumentor.instrument_connection(conn, tracer_provider=tracing.provider(), enable_commenter=True)
        with tracing.provider().get_tracer("test").start_as_current_span("request"), conn.cursor() as cursor:
            assert "/*" in _received(cursor)


@pytestmark_db
def test_a_checkout_that_times_out_is_a_failed_acquire_span(traced_spans, monkeypatch):
    from config.multidb.resilience.breaker import DatabaseUnavailable

    pool = {**settings.DATABASES["blog"]["OPTIONS"]["pool"], "min_size": 0, "max_size": 1, "timeout": 0.2}
    monkeypatch.setitem(settings.DATABASES["blog"]["OPTIONS"], "pool", pool)
    close_all_pools()  # rebuilt with one connection
    taken, release = threading.Event(), threading.Event()

    def hold():
        with connections["blog"].cursor() as cursor:
            cursor.execute("SELECT 1")
            taken.set()
            release.wait(30)
        connections["blog"].close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        with pytest.raises(DatabaseUnavailable, match="pool_timeout"):
            connections["blog"].ensure_connection()
    finally:
        release.set()
        holder.join(30)
    (failed,) = [s for s in traced_spans.get_finished_spans() if s.attributes.get("error.type")]
    assert failed.name == "db.pool.acquire" and failed.attributes["db.alias"] == "blog"
    assert failed.attributes["error.type"] == "pool_timeout" and not failed.status.is_ok
    assert failed.attributes["db.pool.wait_ms"] >= 200  # the pool gives up only after its 0.2 s
