from django.core.management.base import BaseCommand

from config.demo.data import seed_demo


class Command(BaseCommand):
    help = "Load the demo data set (users, posts, products, accounts); running it twice changes nothing."

    def handle(self, *args, **options):
        created = []
        seed_demo(log=created.append)
        for line in created:
            self.stdout.write(line)
        self.stdout.write(f"demo data: {len(created)} object(s) created" if created else "demo data already loaded")
