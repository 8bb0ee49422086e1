"""Audit events as JSON lines, oldest first."""

from __future__ import annotations

import datetime
import json

from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from audit.selectors import events_since
from config.multidb.public import JobCommand

FIELDS = ("id", "occurred_at", "actor", "action", "model", "object_pk", "changes", "database")


def parse_since(text: str) -> datetime.datetime:
    """An ISO-8601 date or date-time; a naive one is UTC."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--since: {text!r} is not an ISO-8601 date or date-time (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    if timezone.is_naive(value):
        value = value.replace(tzinfo=datetime.UTC)
    return value


class Command(JobCommand):
    help = "Print audit events as JSON lines (id, occurred_at, actor, action, model, object_pk, changes, database)."

    def add_arguments(self, parser):
        parser.add_argument("--since", metavar="ISO-8601", help="only events that occurred at or after this time")

    def run(self, *args, since: str | None = None, **options):
        start = parse_since(since) if since is not None else None
        for row in events_since(start, fields=FIELDS):
            row["id"] = str(row["id"])
            row["occurred_at"] = row["occurred_at"].isoformat()  # microseconds kept
            self.stdout.write(json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")))
