"""audit_auditevent becomes a table partitioned by month on occurred_at (PostgreSQL
declarative partitioning), with a DEFAULT partition as a safety net, and gets the indexes
of the admin and of the history link (partitioned indexes: declared on the table, built on
every partition).

Existing rows are copied in this migration's transaction (the old table is locked
meanwhile); a partition is made for every month from the oldest event to three months
ahead. The primary key becomes (id, occurred_at), as a unique constraint of a partitioned
table must hold the partition key; the model keeps `id` as its primary key for the ORM.
The grants stay append-only (INSERT and SELECT for non-owners, on the table and on every
partition). The maintenance functions (config/multidb/ops/appendonly.py) are created here
when `provision_roles` has not made them yet: owner-only, retention 0, until it is run.

Run the relay of this release after it: the old relay's `ON CONFLICT (id)` has no matching
constraint any more (its events wait in the outboxes, and are delivered once, meanwhile).
Not reversible.
"""

from django.db import migrations, models

from config.multidb.public import AppendOnly, install, narrow_grants_sql, partitions_function

TABLE = "audit_auditevent"
OLD = "audit_auditevent_unpartitioned"
MONTHS_AHEAD = 3

INDEXES = [
    models.Index(fields=["occurred_at", "id"], name="audit_event_recent_idx"),
    models.Index(fields=["model", "object_pk", "occurred_at"], name="audit_event_object_idx"),
    models.Index(fields=["object_pk", "occurred_at"], name="audit_event_object_pk_idx"),
    models.Index(fields=["actor", "occurred_at"], name="audit_event_actor_idx"),
    models.Index(fields=["database", "occurred_at"], name="audit_event_database_idx"),
    models.Index(fields=["model", "occurred_at"], name="audit_event_model_idx"),
    models.Index(fields=["action", "occurred_at"], name="audit_event_action_idx"),
]


def partition(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"SELECT min(occurred_at) FROM {TABLE}")
        (oldest,) = cursor.fetchone()
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)")
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    # The raw connection is in this migration's transaction; psycopg composes the functions' SQL.
    install(
        connection.connection,
        AppendOnly(table=TABLE, pk="id", time_column="occurred_at", retention_days=0),
        replace=False,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT public.{partitions_function(TABLE)}(%s, %s)", [MONTHS_AHEAD, oldest])
        # Loaded before the indexes exist: one sorted build per index and partition, not 10M inserts into each.
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
        cursor.execute(f"DROP TABLE {OLD}")
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, occurred_at)")
    model = apps.get_model("audit", "AuditEvent")
    for index in INDEXES:
        schema_editor.add_index(model, index)
    connection.connection.execute(narrow_grants_sql(TABLE))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_apitoken_moves_to_users")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(partition)],
            state_operations=[
                migrations.RemoveIndex(model_name="auditevent", name="audit_event_object_idx"),
                migrations.AlterField(model_name="auditevent", name="occurred_at", field=models.DateTimeField()),
                *[migrations.AddIndex(model_name="auditevent", index=index) for index in INDEXES],
            ],
        )
    ]
