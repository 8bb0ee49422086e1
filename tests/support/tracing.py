"""Traces in the test process: the project's instrumentation installed on a TracerProvider of the
test's own, its spans kept in memory; and reading what an OTLP/HTTP exporter sends."""

from __future__ import annotations

from collections.abc import Iterator

from config.multidb.lifecycle import close_all_pools


def traced() -> Iterator:
    """Install tracing (database and request side) with an in-memory exporter; yield the exporter;
    undo it all. Pools are closed before and after: psycopg is instrumented when a connection opens."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config.httpkit import tracing as request_tracing
    from config.multidb import tracing

    assert not tracing.on, "tracing is already on in the test process (OTEL_* set?)"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    close_all_pools()
    tracing.install(provider)
    request_tracing.install()
    try:
        yield exporter
    finally:
        request_tracing.uninstall()
        tracing.uninstall()
        close_all_pools()
        provider.shutdown()


def spans_of(exporter, trace_id: int | None = None) -> list:
    """The finished spans, of one trace when given."""
    return [s for s in exporter.get_finished_spans() if trace_id is None or s.context.trace_id == trace_id]


def otlp_spans(body: bytes) -> list[dict]:
    """The spans of one OTLP/HTTP protobuf export request: name, kind, attributes, ids, service name."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {}
                for a in span.attributes:
                    value = a.value
                    attributes[a.key] = getattr(value, value.WhichOneof("value"))
                out.append(
                    {
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex(),
                        "attributes": attributes,
                        "service": resource.get("service.name"),
                    }
                )
    return out
