"""Retention: drop the audit trail's monthly partitions older than N days (whole partitions,
no row-by-row delete), and delete the older events of the DEFAULT partition in batches.

Makes sure next months' partitions exist first (and moves any rows the DEFAULT partition
holds into theirs). A partition goes when its whole month is older than N days, so events
are kept at least N days and at most a month longer."""

from __future__ import annotations

from django.core.management.base import CommandError

from audit.services import AuditPruneRefused, audit_events_prune, audit_partitions_ensure
from config.multidb.public import JobCommand


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"--older-than: {text!r} is not a whole number of days") from None
    if value < 0:
        raise CommandError("--older-than must be 0 or more days")
    return value


class Command(JobCommand):
    help = (
        "Drop the audit partitions whose whole month is older than --older-than days and delete the older "
        "events of the DEFAULT partition; prints what was dropped and how many events went."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="DAYS", help="age in days")
        parser.add_argument(
            "--batch",
            type=int,
            default=5000,
            help="events deleted per transaction from the DEFAULT partition, normally empty (default 5000); "
            "partitions are dropped whole whatever it is",
        )

    def run(self, *args, older_than: str, batch: int, **options):
        days = _days(older_than)
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        for name in audit_partitions_ensure():
            self.stdout.write(f"created partition {name}")
        try:
            pruned = audit_events_prune(
                older_than_days=days,
                batch_size=batch,
                progress=lambda n: self.stderr.write(f"deleted {n} so far"),
                dropped=lambda name, n: self.stdout.write(f"dropped partition {name} ({n} event(s))"),
            )
        except AuditPruneRefused as exc:
            # Provisioned databases: only the jobs role may prune, and nothing younger than the retention.
            raise CommandError(f"audit_prune refused by the database: {exc}") from None
        self.stdout.write(
            f"deleted {pruned.total} audit event(s) older than {days} day(s): "
            f"{len(pruned.partitions)} partition(s) dropped, "
            f"{pruned.deleted} event(s) deleted from the default partition"
        )
