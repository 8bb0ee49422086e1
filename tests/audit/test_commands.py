"""audit_export and audit_prune, run as commands (on the jobs pools)."""

from __future__ import annotations

import datetime
import json
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(databases=["default", "default_jobs"], transaction=True)


def event(occurred_at: datetime.datetime, **kw) -> AuditEvent:
    return AuditEvent.objects.create(
        id=uuid.uuid4(),
        occurred_at=occurred_at,
        database="market",
        action="update",
        model="market.product",
        object_pk="1",
        actor="alice",
        **kw,
    )


def export(*args: str) -> list[dict]:
    out = StringIO()
    call_command("audit_export", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_export_is_json_lines_in_order_of_occurrence_with_since():
    now = timezone.now()
    late = event(now, changes={"stock": {"old": 1, "new": 2}})
    early = event(now - datetime.timedelta(days=2))
    middle = event(now - datetime.timedelta(days=1))

    rows = export()
    assert [r["id"] for r in rows] == [str(early.id), str(middle.id), str(late.id)]
    assert set(rows[0]) >= {"id", "occurred_at", "actor", "action", "model", "object_pk", "changes", "database"}
    assert rows[2]["changes"] == {"stock": {"old": 1, "new": 2}}
    assert datetime.datetime.fromisoformat(rows[2]["occurred_at"]) == late.occurred_at

    since = (now - datetime.timedelta(hours=36)).isoformat()
    assert [r["id"] for r in export("--since", since)] == [str(middle.id), str(late.id)]
    assert [r["id"] for r in export("--since", (now + datetime.timedelta(days=1)).date().isoformat())] == []


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01", ""])
def test_export_refuses_a_bad_since_naming_the_option(bad):
    with pytest.raises(CommandError, match="--since"):
        export("--since", bad)


def test_prune_deletes_old_events_in_batches_and_prints_the_count():
    now = timezone.now()
    for days in (40, 41, 42, 43, 44):
        event(now - datetime.timedelta(days=days))
    kept = event(now - datetime.timedelta(days=5))
    out, err = StringIO(), StringIO()
    call_command("audit_prune", "--older-than", "30", "--batch", "2", stdout=out, stderr=err)
    assert "deleted 5 audit event(s)" in out.getvalue()
    assert err.getvalue().count("so far") == 3  # 2 + 2 + 1: one transaction per batch
    assert list(AuditEvent.objects.values_list("id", flat=True)) == [kept.id]


@pytest.mark.parametrize("bad", ["soon", "-1"])
def test_prune_refuses_a_bad_age_naming_the_option(bad):
    with pytest.raises(CommandError, match="--older-than"):
        call_command("audit_prune", "--older-than", bad)
