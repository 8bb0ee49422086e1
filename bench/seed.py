"""Seed the bench databases (run by bench/run.py with the bench URLs in the
environment): USERS users in one bulk insert, a staff user with an API token.

Writes, under the directory given as argv[1]:
    user_ids.txt   every seeded user id, one a line (wrk picks among them)
    token.txt      the staff user's API key (mode 0600; never printed)
    staff_id.txt   its user id (the owner of the accounts run.py opens over the API)
and prints one JSON line: {"users": N, "staff_id": id}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402

from config.multidb.lifecycle import close_all_pools  # noqa: E402
from config.users.tokens import api_token_create  # noqa: E402

BATCH = 2000


def main() -> None:
    out = Path(sys.argv[1])
    count = int(os.environ.get("BENCH_USERS", "10000"))
    User = get_user_model()
    unusable = make_password(None)  # nobody logs in as a bench user; hashing 10,000 times would take minutes
    users = [
        User(username=f"bench{i:05d}", email=f"bench{i:05d}@example.com", password=unusable)
        for i in range(1, count + 1)
    ]
    User.objects.bulk_create(users, batch_size=BATCH)
    staff = User.objects.create(
        username="bench_staff", email="bench_staff@example.com", password=unusable, is_staff=True
    )
    # What the API's permissions ask of the writes run.py makes over the API (staff status grants
    # nothing there); the accounts it opens are this user's own, so its transfers are an owner's.
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="market", codename__in=["add_account", "add_product"])
    )
    key = api_token_create(user=staff)

    ids = User.objects.filter(username__regex=r"^bench[0-9]+$").order_by("id").values_list("id", flat=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "user_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    token = out / "token.txt"
    token.touch(mode=0o600)
    token.chmod(0o600)
    token.write_text(key + "\n")
    (out / "staff_id.txt").write_text(f"{staff.id}\n")
    print(json.dumps({"users": len(ids), "staff_id": staff.id}))


if __name__ == "__main__":
    try:
        main()
    finally:
        close_all_pools()
