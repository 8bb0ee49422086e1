"""Migrate every domain database; behind a transaction pooler, through its direct URL.

Migrations hold session state a transaction pooler cannot keep (SET, long DDL
under a web statement timeout, non-atomic steps), so with
`<P>_DATABASE_POOLER=transaction` the alias is pointed at `<P>_DATABASE_DIRECT_URL`
for the duration of its migrate, and the command refuses when that is missing.
"""

import contextlib
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from config.multidb.conf.aliases import alias as alias_info
from config.multidb.conf.databases import domain_aliases

CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT")


@contextlib.contextmanager
def direct_connection(alias: str):
    """Point `alias` at its DIRECT server inside the block (its pool is rebuilt on both sides)."""
    wrapper = connections[alias]
    sd = wrapper.settings_dict
    saved = {k: sd[k] for k in CONNECTION_KEYS}
    saved_options = dict(sd["OPTIONS"])
    wrapper.close()
    wrapper.close_pool()
    sd.update({k: sd["DIRECT"][k] for k in CONNECTION_KEYS})
    # A direct session may carry settings: the long-job statement timeout, not the web one.
    sd["OPTIONS"]["options"] = f"-c statement_timeout={settings.ENV['JOBS_DATABASE_STATEMENT_TIMEOUT_MS']}"
    try:
        yield
    finally:
        wrapper.close()
        wrapper.close_pool()
        sd.update(saved)
        sd["OPTIONS"].clear()
        sd["OPTIONS"].update(saved_options)


class Command(BaseCommand):
    help = (
        "Migrate every database alias (not the jobs or replica aliases); each gets only its own tables. "
        "Uses <P>_DATABASE_DIRECT_URL when set (required with <P>_DATABASE_POOLER=transaction)."
    )

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        plan = []
        for alias in domain_aliases():
            sd = connections[alias].settings_dict
            info = alias_info(alias)
            if info.pooler == "transaction" and not sd.get("DIRECT"):
                raise CommandError(
                    f"{alias}: {info.var('POOLER')}=transaction, so migrations need a direct server "
                    f"connection: set {info.var('DIRECT_URL')} (the server behind the pooler). Nothing was "
                    "migrated."
                )
            plan.append((alias, bool(sd.get("DIRECT"))))
        for alias, direct in plan:
            start = time.perf_counter()
            with direct_connection(alias) if direct else contextlib.nullcontext():
                call_command("migrate", database=alias, interactive=False, verbosity=max(verbosity - 1, 0))
            via = " (direct URL)" if direct else ""
            self.stdout.write(f"{alias:<10} migrated in {time.perf_counter() - start:.1f}s{via}")
