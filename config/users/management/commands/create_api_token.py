from django.core.management.base import BaseCommand, CommandError

from config.users.tokens import api_token_create, user_for_username


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown only this once) on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = user_for_username(username)
        if user is None:
            raise CommandError(f"no user named {username!r}")
        key = api_token_create(user=user)
        self.stderr.write(f"API token for {user.username} (store it now; it cannot be shown again):")
        self.stdout.write(key)
