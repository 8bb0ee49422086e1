"""Prometheus gauges of the audit outboxes (rendered by config/multidb/metrics.py with the rest).

In a multi-process server (PROMETHEUS_MULTIPROC_DIR set) every process reports
what it last saw; the scrape keeps the largest value.
"""

from __future__ import annotations

from prometheus_client import Gauge

OUTBOX_DEPTH = Gauge(
    "platform_audit_outbox_depth",
    "Audit events waiting in a domain database's outbox",
    ["database"],
    multiprocess_mode="max",
)
OUTBOX_OLDEST_AGE = Gauge(
    "platform_audit_outbox_oldest_age_seconds",
    "Age of the oldest undelivered audit event (0 when the outbox is empty)",
    ["database"],
    multiprocess_mode="max",
)


def set_outbox(alias: str, depth: int, oldest_age_s: float | None) -> None:
    OUTBOX_DEPTH.labels(database=alias).set(depth)
    OUTBOX_OLDEST_AGE.labels(database=alias).set(oldest_age_s or 0.0)
