"""Create the least-privilege roles of every database (config/multidb/ops/roles.py).

    PLATFORM_BLOG_APP_PASSWORD=... PLATFORM_BLOG_OWNER_PASSWORD=... \\
        manage.py provision_roles --superuser-url postgres://postgres@db.internal:5432/postgres

The superuser URL names the server and the administrator; its database part is
not used: each alias's own database (the NAME of its URL, or of its DIRECT_URL
behind a pooler) is provisioned on that server. Aliases on other servers: run
it once per server with `--database`. Run it before or after `migrate_all`, and
again whenever you like: it is idempotent. A password never goes on the command line:
the superuser's comes from PGPASSWORD / ~/.pgpass or `--superuser-url-env VAR`,
the roles' from `<ROLE>_PASSWORD` variables (or `--password-env ROLE=VAR`).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import psycopg
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, router

from config.multidb.conf.aliases import alias as alias_info
from config.multidb.conf.databases import domain_aliases
from config.multidb.lifecycle import temp_table_models
from config.multidb.ops.roles import AppendOnly, DatabaseRoles, password_variable, passwords_from_env, provision
from config.multidb.resilience.connect import clean_error

DEFAULT_AUDIT_RETENTION_DAYS = 365


class Command(BaseCommand):
    help = (
        "Create or update per-database owner, app (web) and jobs roles (least privilege, per-role timeouts, "
        "an append-only audit trail); "
        "passwords from environment variables only."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--superuser-url", help="postgres://USER@HOST:PORT/ (no password here: use PGPASSWORD)")
        source.add_argument(
            "--superuser-url-env",
            metavar="VAR",
            help="name of an environment variable holding the superuser URL (may hold a password)",
        )
        parser.add_argument(
            "--database",
            action="append",
            choices=domain_aliases(),
            metavar="ALIAS",
            help="alias to provision (repeatable; default: all of them)",
        )
        parser.add_argument("--prefix", default="platform", help="role name prefix (default: platform)")
        parser.add_argument(
            "--password-env",
            action="append",
            default=[],
            metavar="ROLE=VAR",
            help="read ROLE's password from VAR instead of <ROLE>_PASSWORD (repeatable)",
        )
        parser.add_argument(
            "--audit-retention-days",
            type=int,
            default=DEFAULT_AUDIT_RETENTION_DAYS,
            metavar="DAYS",
            help="audit events younger than this are never deleted, not even by audit_prune "
            f"(default {DEFAULT_AUDIT_RETENTION_DAYS})",
        )

    def handle(
        self, *args, superuser_url, superuser_url_env, database, prefix, password_env, audit_retention_days, **options
    ):
        if audit_retention_days < 0:
            raise CommandError("--audit-retention-days must be 0 or more")
        if superuser_url_env:
            superuser_url = os.environ.get(superuser_url_env)
            if not superuser_url:
                raise CommandError(f"{superuser_url_env} is not set")
        elif urlsplit(superuser_url).password:
            raise CommandError(
                "--superuser-url must not contain a password (it would show in the process list): "
                "set PGPASSWORD, use ~/.pgpass, or pass the URL in a variable with --superuser-url-env"
            )
        conninfo = self._conninfo(superuser_url)
        overrides = {}
        for item in password_env:
            role, sep, var = item.partition("=")
            if not sep or not role or not var:
                raise CommandError(f"--password-env takes ROLE=VAR, got {item!r}")
            overrides[role] = var

        targets = [self._target(alias, prefix, audit_retention_days) for alias in (database or domain_aliases())]
        roles = [r for t in targets for r in t.roles]
        unknown = sorted(set(overrides) - set(roles))
        if unknown:
            raise CommandError(f"--password-env names unknown role(s): {', '.join(unknown)}")
        passwords = passwords_from_env(roles, overrides)
        for target in targets:
            self.stdout.write(f"{target.alias} ({target.database}):")
            try:
                provision(conninfo, target, passwords=passwords, say=self.stdout.write)
            except psycopg.Error as exc:
                raise CommandError(f"{target.alias}: {clean_error(exc, conninfo.get('password'))}") from None
        self.stdout.write(
            "Point the web server at the app roles, job processes (every command that runs on the jobs pools) "
            "at the jobs roles, and migrate as the owners, e.g.:"
        )
        for target in targets:
            self.stdout.write(
                f"  {alias_info(target.alias).var('URL')}=postgres://{target.app}:<${password_variable(target.app)}>@.../"
                f"{target.database}   (jobs: {target.jobs}; migrate_all: {target.owner})"
            )

    def _conninfo(self, url: str) -> dict:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise CommandError("the superuser URL must look like postgres://USER@HOST:PORT/")
        info = {
            "host": parts.hostname,
            "port": parts.port or 5432,
            "user": unquote(parts.username or "postgres"),
            "connect_timeout": 5,
            "application_name": "cli:provision_roles",
        }
        if parts.password:
            info["password"] = unquote(parts.password)
        return info

    def _target(self, alias: str, prefix: str, audit_retention_days: int) -> DatabaseRoles:
        sd = connections[alias].settings_dict
        name = (sd.get("DIRECT") or {}).get("NAME") or sd["NAME"]
        info = alias_info(alias)
        short = info.prefix.lower()
        audit = apps.get_model("audit", "AuditEvent")
        append_only = None
        if router.db_for_write(audit) == alias:
            append_only = AppendOnly(
                table=audit._meta.db_table,
                pk=audit._meta.pk.column,
                time_column=audit._meta.get_field("occurred_at").column,
                retention_days=audit_retention_days,
            )
        return DatabaseRoles(
            alias=alias,
            database=name,
            owner=f"{prefix}_{short}_owner",
            app=f"{prefix}_{short}_app",
            statement_timeout_ms=info.statement_timeout_ms,
            idle_in_transaction_timeout_ms=info.idle_in_transaction_timeout_ms,
            jobs=f"{prefix}_{short}_jobs",
            jobs_statement_timeout_ms=settings.ENV["JOBS_DATABASE_STATEMENT_TIMEOUT_MS"],
            jobs_temp=any(router.db_for_write(apps.get_model(label)) == alias for label in temp_table_models()),
            append_only=append_only,
        )
