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


def test_prune_drops_whole_old_partitions_and_prints_them():
    now = timezone.now()
    # Months without a partition: in the default partition until audit_prune's ensure step
    # makes theirs (moving them), which the retention then drops whole.
    old = [event(now - datetime.timedelta(days=days)) for days in (400, 401, 430)]
    kept = event(now - datetime.timedelta(days=5))
    out, err = StringIO(), StringIO()

    call_command("audit_prune", "--older-than", "300", "--batch", "2", stdout=out, stderr=err)

    lines = out.getvalue().splitlines()
    months = sorted({f"audit_auditevent_y{e.occurred_at:%Y}m{e.occurred_at:%m}" for e in old})
    assert [line for line in lines if line.startswith("created")] == [f"created partition {m}" for m in months]
    dropped = sorted(line for line in lines if line.startswith("dropped"))
    counts = {m: sum(1 for e in old if f"y{e.occurred_at:%Y}m{e.occurred_at:%m}" in m) for m in months}
    assert dropped == [f"dropped partition public.{m} ({counts[m]} event(s))" for m in months]
    assert lines[-1] == (
        f"deleted 3 audit event(s) older than 300 day(s): {len(months)} partition(s) dropped, "
        "0 event(s) deleted from the default partition"
    )
    assert err.getvalue() == ""
    assert list(AuditEvent.objects.values_list("id", flat=True)) == [kept.id]


def test_export_streams_with_flat_memory():
    """100,000 events (about 130 MB of JSON) exported as behind a transaction pooler (no server-side
    cursor): the process's peak memory grows by a fraction of that. Peak RSS, not tracemalloc:
    a result set fetched whole sits in libpq's memory, which tracemalloc does not see."""
    from django.db import connections

    jobs = connections["default_jobs"]  # its statement timeout is a job's
    with jobs.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent SELECT gen_random_uuid(), now() - g * interval '7 seconds', now(), "
            "'market', 'actor-' || (g % 100), NULL, 'update', 'market.product', g::text, "
            "jsonb_build_object('note', repeat('x', 1100), 'n', g) FROM generate_series(1, 100000) g"
        )
    jobs.close()
    saved = jobs.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    jobs.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    sink = LineCounter()
    try:
        before = _rss_kib("VmRSS")
        _reset_peak_rss()
        call_command("audit_export", stdout=sink)
        growth_mib = (_rss_kib("VmHWM") - before) / 1024
    finally:
        jobs.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = saved
        jobs.close()
    assert sink.lines == 100_000 and sink.bytes > 120 * 2**20
    assert growth_mib < 40, growth_mib


class LineCounter:
    def __init__(self):
        self.lines = self.bytes = 0

    def write(self, text: str) -> None:
        self.lines += text.count("\n")
        self.bytes += len(text)

    def flush(self) -> None:
        pass


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from the current RSS (Linux)


@pytest.mark.parametrize("bad", ["soon", "-1"])
def test_prune_refuses_a_bad_age_naming_the_option(bad):
    with pytest.raises(CommandError, match="--older-than"):
        call_command("audit_prune", "--older-than", bad)
