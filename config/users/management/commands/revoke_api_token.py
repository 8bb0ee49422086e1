from django.core.management.base import BaseCommand, CommandError

from config.users.tokens import api_tokens_revoke


class Command(BaseCommand):
    help = (
        "Revoke API tokens: every token of a user (by username), or the token whose key starts with an "
        "8-character prefix (the admin lists prefixes). The keys stop working at the next request."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="a username, or the first 8 characters of a key")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--user", action="store_true", help="TARGET is a username")
        which.add_argument("--prefix", action="store_true", help="TARGET is a key prefix")

    def handle(self, *args, target, user, prefix, **options):
        try:
            revoked = api_tokens_revoke(
                username=None if prefix else target,
                prefix=None if user else target,
            )
        except ValueError as exc:
            raise CommandError(f"{exc}; say which with --user or --prefix") from None
        if not revoked:
            raise CommandError(f"no API token of a user or with a key prefix {target!r}")
        for key_prefix, username in revoked:
            self.stdout.write(f"revoked {key_prefix}… of {username}")
