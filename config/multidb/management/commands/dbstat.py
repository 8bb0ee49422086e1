import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.multidb.lifecycle import outbox_reader
from config.multidb.ops import budget
from config.multidb.ops.activity import ACTIVITY_SQL, summarize
from config.multidb.ops.probe import probe_all


def outbox_status() -> dict | None:
    """The audit outbox per alias, when the audit app provides it ({alias: {depth, oldest_age_s}})."""
    read = outbox_reader()
    if read is None:
        return None
    try:
        return read()
    except Exception as exc:  # a down database must not hide the connection report
        return {"error": type(exc).__name__}


class Command(BaseCommand):
    help = (
        "From pg_stat_activity: connections per database by application_name and state, the oldest "
        "idle-in-transaction, next to the configured budget; --max N exits 1 when a database has more than N."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument(
            "--max",
            type=int,
            default=None,
            metavar="N",
            dest="limit",
            help="exit 1 when a database has more than N connections",
        )

    def handle(self, *args, json, limit, **options):
        # One probe per server for the limits (and who the server is), one for the activity;
        # databases grouped by server and name, one server however many names reach it.
        written, limits, errors = budget.read()
        budgets = budget.plan(
            written,
            instances=1,
            workers=settings.ENV["WEB_CONCURRENCY"],
            threads=settings.ENV["WEB_THREADS"],
            limits=limits,
            errors=errors,
        )
        targets = budget.same_server_targets(written, limits)
        first_alias: dict[str, str] = {}
        databases: dict[tuple[str, str], list[str]] = {}
        for t in targets:
            first_alias.setdefault(t.server, t.alias)
            databases.setdefault((t.server, t.database), []).append(t.alias)
        activity = probe_all(list(first_alias.values()), sql=ACTIVITY_SQL)
        # The app's own pools per alias (a pooler's server-side rows are not the alias's connections).
        planned = {r.alias: r.total for b in budgets for r in b.rows if r.role in budget.CLIENT_ROLES}
        outbox = outbox_status()

        report = {"servers": [], "databases": [], "outbox_available": outbox is not None}
        rows_by_server = {}
        for server, alias in first_alias.items():
            result = activity[alias]
            rows_by_server[server] = result.rows or []
            lim = limits.get(server)
            report["servers"].append(
                {
                    "server": server,
                    "connections": sum(r[3] for r in result.rows or []) if result.ok else None,
                    "budget": sum(planned[t.alias] for t in targets if t.server == server),
                    "max_connections": lim.max_connections if lim else None,
                    "available": lim.available if lim else None,
                    "error": None if result.ok else result.error,
                }
            )
        for (server, name), aliases in databases.items():
            entry = {
                "server": server,
                "database": name,
                "aliases": aliases,
                **summarize(rows_by_server[server], name),
                "budget": sum(planned[a] for a in aliases),
            }
            if outbox is not None:
                entry["outbox"] = {a: outbox[a] for a in aliases if a in outbox}
            report["databases"].append(entry)
        over = [d for d in report["databases"] if limit is not None and d["connections"] > limit]
        report["over_max"] = [f"{d['server']}/{d['database']}" for d in over]

        self.stdout.write(jsonlib.dumps(report, indent=2) if json else self.table(report, outbox))
        failed = [f"{s['server']} unreachable: {s['error']}" for s in report["servers"] if s["error"]]
        failed += [
            f"{d['server']}/{d['database']} has {d['connections']} connections (more than {limit})" for d in over
        ]
        if failed:
            raise CommandError("; ".join(failed), returncode=1)

    def table(self, report: dict, outbox: dict | None) -> str:
        lines = []
        for s in report["servers"]:
            if s["error"]:
                lines.append(f"server {s['server']}: unreachable ({s['error']})")
                continue
            room = f" of {s['available']} available" if s["available"] is not None else ""
            lines.append(
                f"server {s['server']}: {s['connections']} client connections{room}; "
                f"configured budget of this instance's pools {s['budget']}"
            )
        for d in report["databases"]:
            lines.append("")
            lines.append(
                f"{d['server']}/{d['database']} (aliases {', '.join(d['aliases'])}): "
                f"{d['connections']} connections, budget {d['budget']}"
            )
            lines.append(f"  {'application_name':<24} {'state':<30} {'count':>5}")
            for row in d["by"]:
                lines.append(f"  {row['application_name'] or '-':<24} {row['state']:<30} {row['count']:>5}")
            if not d["by"]:
                lines.append("  (no connections)")
            age = d["oldest_idle_in_transaction_s"]
            lines.append(f"  oldest idle in transaction: {'-' if age is None else f'{age:.1f} s'}")
            for alias, status in (d.get("outbox") or {}).items():
                oldest = status.get("oldest_age_s")
                lines.append(
                    f"  audit outbox {alias}: {status.get('depth')} waiting, oldest "
                    f"{'-' if oldest is None else f'{oldest:.1f} s'}"
                )
        if outbox and "error" in outbox:
            lines.append(f"\naudit outbox: not available ({outbox['error']})")
        return "\n".join(lines)
