"""The README's "Adding a database" recipe, step by step on a copy of the checkout: a fourth
database gets its app's tables and nothing else, its variables documented, its audit outbox;
then its model routes (a write lands in the new database), is audited (the relay delivers the
event to the shared database) and is served (the admin lists it), with no other change."""

from __future__ import annotations

import subprocess
import sys

MODELS = '''from django.db import models

from audit.capture import AuditedModel
from audit.outbox import OutboxEntry


class AuditOutbox(OutboxEntry):
    """Audit events of this database waiting for delivery to the shared database."""


class Invoice(AuditedModel):
    number = models.CharField(max_length=20, unique=True)
'''

ADMIN = """from django.contrib import admin

from .models import Invoice

admin.site.register(Invoice)
"""

# A write with no `using`: the router must send it to billing, and the outbox row with it.
WRITE = """
from django.db import connections
from billing.models import Invoice
invoice = Invoice.objects.create(number="INV-1")
for alias in ("default", "blog", "market", "billing"):
    with connections[alias].cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'billing_invoice'")
        if cur.fetchone()[0]:
            cur.execute("SELECT number FROM billing_invoice")
            print("rows", alias, [r[0] for r in cur.fetchall()])
print("pk", invoice.pk)
"""

AUDITED = """
from audit.models import AuditEvent
for e in AuditEvent.objects.filter(model="billing.invoice"):
    print("event", e.action, e.database, e.object_pk)
"""

# The admin through Django's whole request path (middleware, router, templates).
SERVED = """
from django.contrib.auth import get_user_model
from django.test import Client
from billing.models import Invoice
user = get_user_model().objects.create_superuser("billing-admin", "b@example.com", "pw-not-used-here")
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
page = client.get("/admin/billing/invoice/")
change = f"/admin/billing/invoice/{Invoice.objects.get(number='INV-1').pk}/change/"
print("admin", page.status_code, change in page.content.decode(), client.get(change).status_code)
"""


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_recipe_adds_a_fourth_database(checkout):
    root = checkout.root
    assert checkout.make("db").returncode == 0  # a checkout where `make run` has run
    # 1. the app
    made = checkout.manage("startapp", "billing")
    assert made.returncode == 0, made.stderr
    (root / "billing" / "models.py").write_text(MODELS)
    (root / "billing" / "admin.py").write_text(ADMIN)
    # 2. INSTALLED_APPS, 3. the topology
    edit(root / "config" / "settings" / "base.py", '    "market",\n', '    "market",\n    "billing",\n')
    edit(
        root / "config" / "topology.py",
        '    Domain("market", "MARKET", ("market",)),\n',
        '    Domain("market", "MARKET", ("market",)),\n    Domain("billing", "BILLING", ("billing",)),\n',
    )
    # 4. the URL (the local cluster's, written by make db)
    db = checkout.make("db")
    assert db.returncode == 0, db.stdout + db.stderr
    assert "created database platform_billing" in db.stdout
    # 5. migrations, 6. the generated docs
    migrations = checkout.manage("makemigrations", "billing")
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr
    docs = subprocess.run([sys.executable, "scripts/gen_config_docs.py"], cwd=root, capture_output=True, text=True)
    assert docs.returncode == 0, docs.stderr
    assert "BILLING_DATABASE_URL" in (root / ".env.example").read_text()
    # 7. migrate every alias: billing's tables in platform_billing only
    migrated = checkout.manage("migrate_all")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    tables = checkout.manage(
        "shell",
        "-c",
        "from django.db import connections\n"
        "for alias in ('default', 'blog', 'market', 'billing'):\n"
        "    names = connections[alias].introspection.table_names()\n"
        "    print(alias, sorted(t for t in names if t.startswith('billing_')))",
    )
    assert tables.returncode == 0, tables.stderr
    lines = dict(
        line.split(" ", 1)
        for line in tables.stdout.splitlines()
        if line.split(" ")[0] in ("default", "blog", "market", "billing")
    )
    assert lines["billing"] == "['billing_auditoutbox', 'billing_invoice']"
    assert lines["default"] == lines["blog"] == lines["market"] == "[]"
    check = checkout.manage("dbcheck")
    assert check.returncode == 0 and "billing" in check.stdout, check.stdout + check.stderr
    # 8. the model routes: the row is in billing's database, the only one with the table
    wrote = checkout.manage("shell", "-c", WRITE)
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    rows = [line for line in wrote.stdout.splitlines() if line.startswith("rows ")]
    assert rows == ["rows billing ['INV-1']"], wrote.stdout
    pk = next(line.split()[1] for line in wrote.stdout.splitlines() if line.startswith("pk "))
    # 9. audited: the relay delivers the outbox row to the shared database's trail
    relayed = checkout.manage("audit_relay")
    assert relayed.returncode == 0, relayed.stdout + relayed.stderr
    events = checkout.manage("shell", "-c", AUDITED)
    assert events.returncode == 0, events.stderr
    assert [line for line in events.stdout.splitlines() if line.startswith("event ")] == [
        f"event create billing {pk}"
    ], events.stdout
    # 10. served: the admin lists the invoice and opens it
    served = checkout.manage("shell", "-c", SERVED)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "admin 200 True 200" in served.stdout.splitlines(), served.stdout
