import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.databases import domain_aliases


class Command(BaseCommand):
    help = "Migrate every database alias (not the jobs or replica aliases); each gets only its own tables."

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        for alias in domain_aliases():
            start = time.perf_counter()
            call_command("migrate", database=alias, interactive=False, verbosity=max(verbosity - 1, 0))
            self.stdout.write(f"{alias:<10} migrated in {time.perf_counter() - start:.1f}s")
