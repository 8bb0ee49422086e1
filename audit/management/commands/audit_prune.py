"""Delete audit events older than N days, in batches (short transactions, no long lock)."""

from __future__ import annotations

from django.core.management.base import CommandError

from audit.services import AuditPruneRefused, audit_events_prune
from config.multidb.jobs import JobCommand


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"--older-than: {text!r} is not a whole number of days") from None
    if value < 0:
        raise CommandError("--older-than must be 0 or more days")
    return value


class Command(JobCommand):
    help = "Delete audit events that occurred more than --older-than days ago; prints how many."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="DAYS", help="age in days")
        parser.add_argument("--batch", type=int, default=5000, help="events deleted per transaction (default 5000)")

    def run(self, *args, older_than: str, batch: int, **options):
        days = _days(older_than)
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        try:
            deleted = audit_events_prune(
                older_than_days=days, batch_size=batch, progress=lambda n: self.stderr.write(f"deleted {n} so far")
            )
        except AuditPruneRefused as exc:
            # Provisioned databases: only the jobs role may prune, and nothing younger than the retention.
            raise CommandError(f"audit_prune refused by the database: {exc}") from None
        self.stdout.write(f"deleted {deleted} audit event(s) older than {days} day(s)")
