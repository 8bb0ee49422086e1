from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.multidb.ops import budget


class Command(BaseCommand):
    help = (
        "Connections a fleet of gunicorn instances could open on each database server, against "
        "max_connections - superuser_reserved_connections, and on each transaction pooler, against "
        "<P>_DATABASE_POOLER_MAX_CLIENT_CONN; exit 1 when one is over "
        "(config/multidb/ops/budget.py has the arithmetic)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--instances", type=int, default=1, help="gunicorn instances (default 1)")
        parser.add_argument("--workers", type=int, default=None, help="workers per instance (default WEB_CONCURRENCY)")
        parser.add_argument("--threads", type=int, default=None, help="threads per worker (default WEB_THREADS)")
        parser.add_argument(
            "--poolers",
            type=int,
            default=1,
            help="transaction poolers (PgBouncer instances) in front of each pooled server (default 1)",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, instances, workers, threads, poolers, json, **options):
        workers = settings.ENV["WEB_CONCURRENCY"] if workers is None else workers
        threads = settings.ENV["WEB_THREADS"] if threads is None else threads
        for name, value in (
            ("--instances", instances),
            ("--workers", workers),
            ("--threads", threads),
            ("--poolers", poolers),
        ):
            if value < 1:
                raise CommandError(f"{name} must be at least 1")
        targets, limits, errors = budget.read()
        budgets = budget.plan(
            targets,
            instances=instances,
            workers=workers,
            threads=threads,
            limits=limits,
            errors=errors,
            poolers=poolers,
        )
        shape = {"instances": instances, "workers": workers, "threads": threads}
        self.stdout.write(
            budget.to_json(budgets, **shape, poolers=poolers) if json else budget.format_table(budgets, **shape)
        )
        failed = [f"{b.label} over by {b.total - b.available}" for b in budgets if b.over]
        failed += [f"{b.label} limits unknown ({b.error})" for b in budgets if b.unknown]
        if failed:
            raise CommandError("; ".join(failed), returncode=1)
