"""OpenTelemetry traces of the database side: psycopg statement spans and pool checkouts,
tagged with the Django alias and the role of the connection. Off unless the standard OTEL_*
variables ask for it; off, nothing is imported, patched or called per request.

On when `OTEL_TRACES_EXPORTER` names exporters (other than `none`), or when
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` is set (then: `otlp`);
`OTEL_SDK_DISABLED=true` keeps it off. Everything else is the SDK's own reading of the
environment: service name and resource, sampler, batch sizes, the exporter's endpoint,
headers and timeouts. `otlp` is OTLP over HTTP/protobuf (the exporter installed here).

Per process (`install()`, from MultiDbConfig.ready): psycopg instrumented with its SQL
commenter off (a comment carrying the trace id makes every statement text unique: the server
could not reuse a prepared statement) and the statements of Django's connections tagged, both
against OpenTelemetry's global TracerProvider. No provider and no thread exist yet: those come
with `start_export()`, at once in a command, in each gunicorn worker after the fork
(post_worker_init), never in the master (`defer_export()`, from gunicorn.conf.py); so a fork
leaves nothing behind to forget, and each worker has its own resource (service.instance.id).

Attributes (README, Traces):
    db.alias, db.role                  on statement spans and `db.pool.acquire` spans
    db.pool.wait_ms                    on `db.pool.acquire`: the wait for a pooled connection
    db.client.connection.pool.name     on `db.pool.acquire`: the pool (application_name `<role>:<alias>`)
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Mapping

from config.multidb.conf.aliases import alias_or_none
from config.multidb.conf.env import ConfigError

EXPORTER_GROUP = "opentelemetry_traces_exporter"  # the SDK's entry points of span exporters
OTLP = "otlp_proto_http"
PSYCOPG_SCOPE = "opentelemetry.instrumentation.psycopg"
DEFAULT_SERVICE_NAME = "multidb-platform"

on = False  # read by the backend where it would otherwise do tracing work
_provider = None
_tracer = None
_exporters: list[str] = []
_exporting = False
_deferred = False
_statement: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("traced_statement", default=None)


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the OTEL_* variables ask for, as entry-point names; [] = tracing off.
    Raises ConfigError (naming the variable) for an exporter or OTLP protocol not installed."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if raw:
        names = [name.strip() for name in raw.split(",") if name.strip()]
        if "none" in (name.lower() for name in names):
            return []
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        names = ["otlp"]
    else:
        return []
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group=EXPORTER_GROUP)}
    out = []
    for name in names:
        if name == "otlp":
            var = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
            protocol = environ.get(var, "").strip()
            if not protocol:
                var, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
            if protocol not in ("", "http/protobuf"):
                raise ConfigError(f"{var}: only http/protobuf is installed (opentelemetry-exporter-otlp-proto-http)")
            name = OTLP
        if name not in installed:
            known = ", ".join(sorted({"otlp", *installed} - {OTLP}))
            raise ConfigError(f"OTEL_TRACES_EXPORTER names an exporter that is not installed ({known} are)")
        if name not in out:
            out.append(name)
    return out


def defer_export() -> None:
    """This process forks workers that serve (gunicorn's master): it starts no exporting thread;
    each worker calls start_export()."""
    global _deferred
    _deferred = True


def install(provider=None) -> bool:
    """Instrument this process when tracing is on (idempotent). No provider, no thread yet: the
    instrumentation uses OpenTelemetry's global one, which start_export() sets (so each gunicorn
    worker has its own, with its own service.instance.id). `provider`: a TracerProvider of the
    caller's (tests), used instead, never made global; start_export() then does nothing."""
    global on, _provider, _tracer, _exporters
    if on:
        return True
    from django.conf import settings

    _exporters = [] if provider is not None else list(getattr(settings, "TRACES_EXPORTERS", []))
    if provider is None and not _exporters:
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    if provider is not None:
        provider.add_span_processor(_statement_tags())
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    _provider, _tracer = provider, trace.get_tracer(__name__, tracer_provider=provider)
    on = True
    from django.db import connections

    for conn in connections.all(initialized_only=True):  # those made before (this thread's)
        tag_statements(conn)
    if _exporters and not _deferred:  # a process that forks no workers: a command, a script
        start_export()
        if settings.APP_ROLE == "cli":
            _trace_command()
    return True


def start_export() -> None:
    """This process's TracerProvider, made global, and its exporters (BatchSpanProcessor: a thread
    each). Once per process; in a gunicorn worker, after the fork."""
    global _provider, _exporting
    if not on or _exporting or not _exporters:
        return
    from importlib.metadata import entry_points

    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    # Resource, sampler and span limits come from the environment (the SDK reads them).
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": DEFAULT_SERVICE_NAME}))
    provider.add_span_processor(_statement_tags())
    for name in _exporters:
        (entry,) = entry_points(group=EXPORTER_GROUP, name=name)
        provider.add_span_processor(BatchSpanProcessor(entry.load()()))
    trace.set_tracer_provider(provider)
    _provider, _exporting = provider, True


def _trace_command() -> None:
    """One span around a command (`manage.py migrate_all`), parent of its statements; it ends
    at exit, before the provider's own exit hook exports it (atexit runs hooks last in, first out)."""
    import atexit
    import sys

    from opentelemetry import context, trace

    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        command += " " + sys.argv[1]
    span = _tracer.start_span(command)
    context.attach(trace.set_span_in_context(span))
    atexit.register(span.end)


def flush() -> None:
    """Export what is queued (a gunicorn worker on its way out)."""
    if _exporting:
        _provider.force_flush()


def uninstall() -> None:
    """Undo install() (tests): psycopg unpatched, statement tags removed. Connections opened while it
    was on keep their traced cursors until closed: close the pools too."""
    global on, _provider, _tracer
    if not on:
        return
    from django.db import connections
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    PsycopgInstrumentor().uninstrument()
    for conn in connections.all(initialized_only=True):
        conn.execute_wrappers[:] = [w for w in conn.execute_wrappers if not getattr(w, "traced_statement", False)]
    on, _provider, _tracer = False, None, None


def provider():
    """The TracerProvider given to install() (tests), else None: the instrumentation then uses the
    global one (start_export)."""
    return _provider


def role_of(alias: str) -> str | None:
    """web, cli, test or jobs: the first half of the alias's application_name."""
    info = alias_or_none(alias)
    return info.label.split(":", 1)[0] if info else None


def tag_statements(conn) -> None:
    """Tag the statement spans of a Django connection (a DatabaseWrapper) with its alias and role."""
    role = role_of(conn.alias)
    if role is None or any(getattr(w, "traced_statement", False) for w in conn.execute_wrappers):
        return
    tags = {"db.alias": conn.alias, "db.role": role}

    def traced_statement(execute, sql, params, many, context):
        token = _statement.set(tags)
        try:
            return execute(sql, params, many, context)
        finally:
            _statement.reset(token)

    traced_statement.traced_statement = True
    conn.execute_wrappers.append(traced_statement)  # innermost: around the cursor's own execute


def pool_acquired(alias: str, waited: float, error: str | None = None) -> None:
    """A `db.pool.acquire` span, child of the current one, covering the wait for a connection."""
    end = time.time_ns()
    attributes = {"db.alias": alias, "db.pool.wait_ms": round(waited * 1000, 3)}
    info = alias_or_none(alias)
    if info is not None:
        attributes["db.role"] = role_of(alias)
        attributes["db.client.connection.pool.name"] = info.label
    span = _tracer.start_span("db.pool.acquire", start_time=end - int(waited * 1e9), attributes=attributes)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=end)


def _statement_tags():
    from opentelemetry.sdk.trace import SpanProcessor

    class StatementTags(SpanProcessor):
        """Adds db.alias and db.role to the psycopg span of a statement run through Django."""

        def on_start(self, span, parent_context=None) -> None:
            tags = _statement.get()
            if tags is not None and span.instrumentation_scope.name == PSYCOPG_SCOPE:
                span.set_attributes(tags)

    return StatementTags()
