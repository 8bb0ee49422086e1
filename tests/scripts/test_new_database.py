"""The README's "Adding a database" recipe, step by step on a copy of the checkout: a fourth
database gets its app's tables and nothing else, its variables documented, its audit outbox."""

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
