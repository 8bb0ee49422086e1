from django.core.management.base import BaseCommand

from config.demo.data import demo_login


class Command(BaseCommand):
    help = "Print the demo admin login that `make run` created."

    def handle(self, *args, **options):
        self.stdout.write(demo_login())
