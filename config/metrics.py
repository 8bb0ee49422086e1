"""Prometheus metrics (placeholder until the operations work)."""
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def render():
    return generate_latest(), CONTENT_TYPE_LATEST
