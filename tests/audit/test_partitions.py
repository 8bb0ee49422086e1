"""The audit trail partitioned by month: its shape, where rows land, partitions made ahead
of time (by migrate, the relay, audit_prune) and retention by dropping whole partitions.

Each test runs in a transaction that is rolled back, DDL included: partitions a test
creates or drops come back as they were."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from audit import relay
from audit.apps import ensure_partitions
from audit.models import AuditEvent
from audit.services import MONTHS_AHEAD, AuditPruneRefused, audit_events_prune, audit_partitions_ensure
from config.multidb.ops.appendonly import AppendOnly, install
from market.models import AuditOutbox as MarketOutbox

pytestmark = pytest.mark.django_db(databases=["default", "market"])

TABLE = "audit_auditevent"
UTC = datetime.UTC


def sql(query: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def month_start(at: datetime.datetime, shift: int = 0) -> datetime.datetime:
    index = at.year * 12 + at.month - 1 + shift
    return datetime.datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def name_of(month: datetime.datetime) -> str:
    return f"{TABLE}_y{month:%Y}m{month:%m}"


def partitions() -> dict[str, str]:
    """{partition: its bound as PostgreSQL prints it}."""
    return dict(
        sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
    )


def event(occurred_at: datetime.datetime, **kw) -> AuditEvent:
    values = {"database": "market", "action": "update", "model": "market.product", "object_pk": "1", "actor": "a"}
    return AuditEvent.objects.create(id=uuid.uuid4(), occurred_at=occurred_at, **{**values, **kw})


def home(e: AuditEvent) -> str:
    (row,) = sql(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [e.id])
    return row[0]


def test_the_table_is_partitioned_by_range_of_occurred_at_with_monthly_partitions_and_a_default():
    assert sql(
        "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = %s::regclass",
        [TABLE],
    ) == [("r", "occurred_at")]
    parts = partitions()
    assert parts[f"{TABLE}_default"] == "DEFAULT"
    now = timezone.now()
    for shift in range(-1, MONTHS_AHEAD + 1):  # last month to three ahead, made by the migration
        month = month_start(now, shift)
        bound = parts[name_of(month)]
        assert (
            bound
            == f"FOR VALUES FROM ('{month:%Y-%m-%d} 00:00:00+00') TO ('{month_start(month, 1):%Y-%m-%d} 00:00:00+00')"
        )
    # The primary key holds the partition key; the model's indexes are partitioned indexes.
    assert sql(
        "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_constraint c "
        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'p'",
        [TABLE],
    ) == [(["id", "occurred_at"],)]
    declared = {index.name for index in AuditEvent._meta.indexes}
    partitioned = {
        n for (n,) in sql("SELECT relname FROM pg_class WHERE relkind = 'I' AND relname LIKE 'audit_event%%'")
    }
    assert declared <= partitioned
    # Each partition has its share of every index (attached to the parent's).
    per_partition = sql(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = ANY(SELECT oid FROM pg_class WHERE relname = ANY(%s))",
        [list(declared)],
    )[0][0]
    assert per_partition == len(declared) * len(parts)


def test_rows_land_in_the_partition_of_their_month_or_the_default():
    now = timezone.now()
    this_month = event(now)
    ahead = event(month_start(now, 2) + datetime.timedelta(days=3))
    ancient = event(now - datetime.timedelta(days=3 * 365))  # no partition for that month
    assert home(this_month) == name_of(month_start(now))
    assert home(ahead) == name_of(month_start(now, 2))
    assert home(ancient) == f"{TABLE}_default"
    # Reads through the table see them all, and a month's read touches only its partition.
    assert AuditEvent.objects.count() == 3
    plan = "\n".join(
        r[0]
        for r in sql(
            f"EXPLAIN SELECT * FROM {TABLE} WHERE occurred_at >= %s AND occurred_at < %s",
            [month_start(now, 2), month_start(now, 3)],
        )
    )
    assert name_of(month_start(now, 2)) in plan and name_of(month_start(now)) not in plan


def test_ensure_moves_rows_held_by_the_default_partition_into_the_partition_it_creates():
    now = timezone.now()
    old = event(now - datetime.timedelta(days=3 * 365), changes={"n": 1})
    also_old = event(old.occurred_at + datetime.timedelta(hours=1))
    far = month_start(now, MONTHS_AHEAD + 6) + datetime.timedelta(days=1)
    future = event(far)  # beyond the partitions made ahead: in the default too, until ensured
    assert {home(old), home(future)} == {f"{TABLE}_default"}

    created = audit_partitions_ensure()

    assert sorted(created) == sorted([name_of(month_start(old.occurred_at)), name_of(month_start(far))])
    assert home(old) == home(also_old) == name_of(month_start(old.occurred_at))
    assert home(future) == name_of(month_start(far))
    assert sql(f"SELECT count(*) FROM {TABLE}_default") == [(0,)]
    assert AuditEvent.objects.get(pk=old.pk).changes == {"n": 1}
    assert audit_partitions_ensure() == []  # nothing left to do


def test_a_redelivered_event_is_still_ignored_once_its_row_moved_partition():
    now = timezone.now()
    occurred = now - datetime.timedelta(days=3 * 365)
    (row,) = MarketOutbox.objects.using("market").bulk_create(
        [MarketOutbox(action="update", model="market.product", object_pk="7", occurred_at=occurred)]
    )
    AuditEvent.objects.create(
        id=row.event_id, occurred_at=occurred, database="market", action="update", model="market.product", object_pk="7"
    )
    audit_partitions_ensure()  # the delivered copy moves from the default partition to its month's
    assert relay.relay_once("market") == 1  # delivered again, as after a relay killed between its commits
    assert AuditEvent.objects.filter(id=row.event_id).count() == 1


def test_partitions_are_made_ahead_by_migrate_and_by_the_relay_once_an_hour(monkeypatch):
    furthest = name_of(month_start(timezone.now(), MONTHS_AHEAD))
    sql(f"DROP TABLE {furthest}")
    ensure_partitions(using="default")  # the post_migrate receiver
    assert furthest in partitions()

    sql(f"DROP TABLE {furthest}")
    monkeypatch.setattr(relay, "_partitions_checked_at", None)
    relay.relay_once("market")
    assert furthest in partitions()
    sql(f"DROP TABLE {furthest}")
    relay.relay_once("market")  # within the hour: not checked again
    assert furthest not in partitions()


def upper_bound(bound: str) -> datetime.datetime | None:
    if bound == "DEFAULT":
        return None
    return datetime.datetime.fromisoformat(bound.split("TO ('")[1].split("'")[0])


def test_prune_drops_the_partitions_wholly_older_than_the_cutoff_and_deletes_old_default_rows():
    now = timezone.now()
    audit_partitions_ensure(since=month_start(now, -15))
    months = [month_start(now, -s) for s in range(15, 0, -1)]
    events = {month: event(month + datetime.timedelta(days=14)) for month in months}
    straggler = event(now - datetime.timedelta(days=5 * 365))  # no partition for its month: the default's
    older_than = 200
    cutoff = now - datetime.timedelta(days=older_than)
    doomed = {name for name, bound in partitions().items() if (upper_bound(bound) or cutoff) < cutoff}
    assert {name_of(m) for m in months if month_start(m, 1) <= cutoff} <= doomed
    assert name_of(month_start(cutoff)) not in doomed  # the boundary month

    dropped = []
    pruned = audit_events_prune(older_than_days=older_than, batch_size=1, dropped=lambda n, c: dropped.append((n, c)))

    assert sorted(n for n, _ in dropped) == sorted(f"public.{name}" for name in doomed)
    assert pruned.partitions == dropped and pruned.deleted == 1
    assert pruned.total == sum(c for _, c in dropped) + 1
    assert not doomed & partitions().keys()
    for month, e in events.items():
        # The boundary month stays whole: nothing younger than the cutoff goes, older ones may wait.
        assert AuditEvent.objects.filter(pk=e.pk).exists() == (name_of(month) not in doomed)
    assert not AuditEvent.objects.filter(pk=straggler.pk).exists()
    assert audit_events_prune(older_than_days=older_than).total == 0


def test_prune_refuses_an_age_below_the_retention_and_drops_nothing():
    spec = AppendOnly(table=TABLE, pk="id", time_column="occurred_at", retention_days=400)
    install(connection.connection, spec, replace=True)
    audit_partitions_ensure(since=month_start(timezone.now(), -20))
    before = partitions()
    with pytest.raises(AuditPruneRefused, match="rows of audit_auditevent are kept for 400 days"):
        audit_events_prune(older_than_days=399)
    assert partitions() == before
    assert audit_events_prune(older_than_days=400).partitions  # at the retention it may


def test_the_migration_replaces_a_prune_function_of_an_older_release_and_keeps_a_current_one():
    raw = connection.connection
    spec = AppendOnly(table=TABLE, pk="id", time_column="occurred_at", retention_days=0)
    assert install(raw, spec, replace=False) == []  # current: left as it is
    raw.execute("DROP FUNCTION public.audit_auditevent_prune(integer, integer)")
    raw.execute(
        "CREATE FUNCTION public.audit_auditevent_prune(a integer, b integer) RETURNS integer LANGUAGE sql AS 'SELECT 0'"
    )
    assert install(raw, spec, replace=False) == ['"public"."audit_auditevent_prune"(integer, integer)']
    result = "SELECT pg_get_function_result('public.audit_auditevent_prune(integer, integer)'::regprocedure)"
    assert raw.execute(result).fetchone()[0].startswith("TABLE(relation text")
