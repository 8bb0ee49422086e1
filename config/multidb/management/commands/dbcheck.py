from concurrent.futures import ThreadPoolExecutor

from django.core.management.base import BaseCommand, CommandError

from config.multidb.conf.aliases import aliases as all_aliases
from config.multidb.ops.probe import probe


class Command(BaseCommand):
    help = "SELECT 1 on every alias; a table of alias, host, database, latency, TLS; exit 1 naming each failure."

    def handle(self, *args, **options):
        aliases = list(all_aliases())
        with ThreadPoolExecutor(max_workers=len(aliases)) as ex:
            results = list(ex.map(probe, aliases))
        self.stdout.write(f"{'alias':<16} {'host':<24} {'database':<24} {'latency':>9}  {'tls':<4} status")
        for r in results:
            latency = f"{r.ms:.1f} ms" if r.ok else "-"
            tls = "-" if r.tls is None else ("yes" if r.tls else "no")
            status = "ok" if r.ok else f"FAILED: {r.error}"
            self.stdout.write(f"{r.alias:<16} {r.host:<24} {r.name:<24} {latency:>9}  {tls:<4} {status}")
        failed = [r.alias for r in results if not r.ok]
        if failed:
            raise CommandError(f"unreachable: {', '.join(failed)}", returncode=1)
