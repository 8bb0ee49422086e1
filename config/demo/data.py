"""The demo data set a new user sees after `make run`: users, posts, products, accounts.

Everything is looked up by a natural key before it is created, so loading it
twice changes nothing. Writes go through the domain services, like any other.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from blog.models import Post
from blog.services import post_create, post_slug_base
from market.models import Account, Product
from market.services import account_create, product_create

ADMIN_USERNAME = "admin"
CREDENTIALS_FILE = Path(settings.BASE_DIR) / "var" / "demo-admin.txt"

AUTHORS = [("alice", "Alice Martin"), ("bob", "Bob Okafor"), ("carol", "Carol Nguyen")]
POSTS = [
    (
        "alice",
        "One pool per database",
        "published",
        ["postgres", "pools"],
        "Each domain gets its own pool, so a slow market never starves the blog.",
    ),
    (
        "alice",
        "Why the audit trail uses an outbox",
        "published",
        ["audit"],
        "Events are written with the change, in the same transaction, and relayed later.",
    ),
    (
        "bob",
        "Reading your own writes from a replica",
        "published",
        ["replicas", "postgres"],
        "Compare LSNs, not replay_lag.",
    ),
    (
        "bob",
        "Budgeting connections across a fleet",
        "published",
        ["pools", "operations"],
        "Instances times workers times pool size must fit under max_connections.",
    ),
    (
        "carol",
        "Circuit breakers for databases",
        "published",
        ["operations"],
        "After repeated failures, answer 503 at once instead of waiting for a timeout.",
    ),
    (
        "carol",
        "PgBouncer in transaction mode",
        "published",
        ["pgbouncer", "postgres"],
        "No session state, no server-side cursors, no prepared statements.",
    ),
    (
        "alice",
        "Draft: long jobs on their own pool",
        "draft",
        ["operations"],
        "Imports run on the jobs pool with their own statement timeout.",
    ),
    (
        "bob",
        "Draft: least privilege per database",
        "draft",
        ["security"],
        "One owner and one app role per database; PUBLIC gets nothing.",
    ),
]
PRODUCTS = [
    ("MUG-001", "Enamel mug", 1200, 40),
    ("TEE-001", "Logo T-shirt", 2500, 25),
    ("CAP-001", "Baseball cap", 1800, 15),
    ("BOOK-PG", "PostgreSQL handbook", 4500, 10),
    ("STK-010", "Sticker pack", 500, 200),
    ("NOTE-A5", "A5 notebook", 900, 60),
    ("PEN-BLK", "Black pen", 300, 500),
    ("BAG-TOTE", "Tote bag", 1500, 30),
    ("HOOD-001", "Hoodie", 5500, 12),
    ("POST-A2", "A2 poster", 1100, 0),
]
OPENING_BALANCES_CENTS = {"alice": 100_000, "bob": 50_000, "carol": 75_000}
# The permission model (docs/permissions.md) by example: alice is a plain user (her own
# account, her own posts and orders), bob edits everyone's posts, carol operates the market.
GROUPS = {
    "market operators": (
        ["carol"],
        [
            "market.add_account",
            "market.view_account",
            "market.transfer_any_account",
            "market.add_product",
            "market.view_order",
        ],
    ),
    "blog editors": (["bob"], ["blog.view_post", "blog.change_post"]),
}


def _admin_password() -> tuple[str, bool]:
    """The demo admin's password: kept in var/ so later runs can print it; (password, is_new)."""
    if CREDENTIALS_FILE.exists():
        return CREDENTIALS_FILE.read_text().strip(), False
    return secrets.token_urlsafe(12), True


def seed_demo(*, log=print) -> None:
    User = get_user_model()
    admin = User.objects.filter(username=ADMIN_USERNAME).first()
    password, new_password = _admin_password()
    if admin is None or new_password:
        if admin is None:
            admin = User.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", password)
            log(f"created user {ADMIN_USERNAME}")
        else:
            admin.set_password(password)
            admin.save(update_fields=["password"])
        CREDENTIALS_FILE.parent.mkdir(parents=True, exist_ok=True)
        CREDENTIALS_FILE.write_text(password + "\n")
        CREDENTIALS_FILE.chmod(0o600)

    users = {}
    for username, full_name in AUTHORS:
        first, last = full_name.split(" ", 1)
        user, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com", "first_name": first, "last_name": last}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            log(f"created user {username}")
        users[username] = user

    for username, title, status, tags, body in POSTS:
        if not Post.objects.filter(slug=post_slug_base(title)).exists():
            post_create(author=users[username], title=title, body=body, status=status, tags=tags)
            log(f"created post {title!r}")

    for sku, name, price_cents, stock in PRODUCTS:
        if not Product.objects.filter(sku=sku).exists():
            product_create(sku=sku, name=name, price_cents=price_cents, stock=stock)
            log(f"created product {sku}")

    for username, balance_cents in OPENING_BALANCES_CENTS.items():
        if not Account.objects.filter(owner_id=users[username].pk).exists():
            account_create(balance_cents=balance_cents, owner_id=users[username].pk)
            log(f"created account for {username}")

    for name, (members, perms) in GROUPS.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:  # later edits in the admin are kept
            group.permissions.set(_permission(perm) for perm in perms)
            group.user_set.add(*(users[m] for m in members))
            log(f"created group {name!r} ({', '.join(members)})")


def _permission(perm: str) -> Permission:
    app_label, codename = perm.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def site_url() -> str:
    """Where a browser on this machine reaches gunicorn: BIND and PORT as gunicorn reads them."""
    bind, port = settings.ENV["BIND"], settings.ENV["PORT"]
    host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def demo_login() -> str:
    password = CREDENTIALS_FILE.read_text().strip() if CREDENTIALS_FILE.exists() else "(run `make run` to create it)"
    return f"Admin: {site_url()}/admin/  user: {ADMIN_USERNAME}  password: {password}"
