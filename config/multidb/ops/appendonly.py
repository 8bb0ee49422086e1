"""Append-only tables partitioned by month: the two functions that maintain them.

A table of this kind (the audit trail) is `PARTITION BY RANGE (<time column>)` with one
partition per calendar month (UTC), named `<table>_y2026m12`, and a DEFAULT partition
`<table>_default` as a safety net. No role but the owner may change or delete its rows;
two `SECURITY DEFINER` functions owned by the owner do the maintenance:

    <table>_partitions_ensure(months_ahead, since)  creates the missing monthly partitions,
        from `since`'s month (default: last month) to `months_ahead` months ahead, plus one
        for every month the DEFAULT partition holds rows of, moving those rows in the same
        transaction (a partition is never created over rows DEFAULT still holds). Returns the
        names created. Harmless to call often: the app and jobs roles may execute it.
    <table>_prune(older_than_days, batch_size)  refuses any age below the retention; drops
        every partition whose whole range is older than the cutoff (one call drops them all
        and returns), or else deletes up to `batch_size` older rows from the DEFAULT partition.
        Returns (relation, dropped, row_count) rows. Only the jobs role may execute it.
        (A table that is not partitioned gets the batch delete on the table itself.)

Both are installed by `provision_roles` (config/multidb/ops/roles.py: retention, owner,
grants) and, when missing, by the migration that partitions the table (owner-only,
retention 0: a development database has no retention), so the same SQL runs everywhere.
Both set `lock_timeout`: a DDL lock that waits behind a long reader would queue every
insert behind it, so they give up instead (`lock_not_available`) and the caller retries.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

LOCK_TIMEOUT = "2s"
# What the prune function returns (its older versions returned an integer; see `install`).
PRUNE_RESULT = "TABLE(relation text, dropped boolean, row_count bigint)"


@dataclass(frozen=True)
class AppendOnly:
    """A table whose rows are written once and never changed: the audit trail."""

    table: str
    pk: str
    time_column: str  # what the retention is measured on (and, partitioned, the partition key)
    retention_days: int  # nothing younger is ever deleted, whoever asks


def prune_function(table: str) -> str:
    """The function the jobs role deletes old rows of an append-only table with (in schema public)."""
    return f"{table}_prune"


def partitions_function(table: str) -> str:
    """The function that creates an append-only table's monthly partitions ahead of time (in schema public)."""
    return f"{table}_partitions_ensure"


def prune_signature(table: str) -> sql.Composable:
    return sql.SQL("{}(integer, integer)").format(sql.Identifier("public", prune_function(table)))


def partitions_signature(table: str) -> sql.Composable:
    return sql.SQL("{}(integer, timestamptz)").format(sql.Identifier("public", partitions_function(table)))


def _regclass_text(table: str) -> sql.Literal:
    return sql.Literal('public."{}"'.format(table.replace('"', '""')))


# The non-owner grantees of a relation holding more than INSERT and SELECT lose it (as in
# audit migration 0003); run on every partition created, since the owner's default privileges
# give the app role DML on every table the owner creates.
_NARROW_GRANTS = """
        FOR grantee IN
            SELECT DISTINCT coalesce(quote_ident(r.rolname), 'PUBLIC') FROM pg_class c
            CROSS JOIN LATERAL aclexplode(c.relacl) a
            LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE c.oid = {relation} AND a.grantee <> c.relowner AND a.privilege_type NOT IN ('INSERT', 'SELECT')
        LOOP
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s', {relation}, grantee);
        END LOOP;
"""

_PRUNE = """
CREATE OR REPLACE FUNCTION {function}(older_than_days integer, batch_size integer)
RETURNS TABLE(relation text, dropped boolean, row_count bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = {lock_timeout} SET TimeZone = 'UTC' AS $prune$
DECLARE
    parent regclass := to_regclass({parent});
    target regclass;
    cutoff timestamptz;
    part record;
    doomed regclass[] := '{{}}';
    counts bigint[] := '{{}}';
    n bigint;
BEGIN
    IF older_than_days IS NULL OR older_than_days < {retention} THEN
        RAISE EXCEPTION 'rows of % are kept for % days: cannot delete those younger than % days',
            {table_name}, {retention}, older_than_days USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF parent IS NULL THEN
        RETURN;
    END IF;
    cutoff := now() - make_interval(days => older_than_days);
    target := parent;
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = parent) THEN
        target := NULL;
        FOR part IN
            SELECT c.oid::regclass AS rel, pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = parent ORDER BY c.relname
        LOOP
            IF part.bound = 'DEFAULT' THEN
                target := part.rel;
            ELSIF substring(part.bound FROM $re$ TO \\('([^']+)'\\)$re$)::timestamptz <= cutoff THEN
                -- Counted before any drop: dropping locks the parent until commit.
                EXECUTE format('SELECT count(*) FROM %s', part.rel) INTO n;
                doomed := doomed || part.rel;
                counts := counts || n;
            END IF;
        END LOOP;
        IF cardinality(doomed) > 0 THEN
            FOR i IN 1 .. cardinality(doomed) LOOP
                relation := doomed[i]::text;
                EXECUTE format('DROP TABLE %s', doomed[i]);
                dropped := true;
                row_count := counts[i];
                RETURN NEXT;
            END LOOP;
            RETURN;  -- the caller commits (releasing the parent), then calls again for the DEFAULT rows
        END IF;
    END IF;
    IF target IS NOT NULL THEN
        EXECUTE format('DELETE FROM %1$s WHERE {pk} IN (SELECT {pk} FROM %1$s WHERE {column} < $1 '
                       'ORDER BY {column} LIMIT $2)', target) USING cutoff, batch_size;
        GET DIAGNOSTICS n = ROW_COUNT;
        relation := target::text;
        dropped := false;
        row_count := n;
        RETURN NEXT;
    END IF;
END
$prune$
"""

_ENSURE = """
CREATE OR REPLACE FUNCTION {function}(months_ahead integer, since timestamptz DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = {lock_timeout} SET TimeZone = 'UTC' AS $ensure$
DECLARE
    parent regclass := to_regclass({parent});
    default_part regclass;
    months timestamptz[];
    held timestamptz[];
    first_month timestamptz;
    lo timestamptz;
    hi timestamptz;
    part_name text;
    locked boolean := false;
    grantee text;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF parent IS NULL OR NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = parent) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('partitions_ensure'), parent::oid::integer);  -- one caller at a time
    SELECT c.oid::regclass INTO default_part FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = parent AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    first_month := date_trunc('month', coalesce(since, now() - interval '1 month'));
    months := ARRAY(SELECT generate_series(first_month, date_trunc('month', now())
                                           + make_interval(months => months_ahead), interval '1 month'));
    IF default_part IS NOT NULL THEN
        EXECUTE format('SELECT array_agg(DISTINCT date_trunc(''month'', {column})) FROM %s', default_part) INTO held;
        months := months || coalesce(held, '{{}}');
    END IF;
    FOR lo IN SELECT DISTINCT m FROM unnest(months) AS m ORDER BY m LOOP
        part_name := {table_name} || to_char(lo, '"_y"YYYY"m"MM');
        CONTINUE WHEN to_regclass(format('public.%I', part_name)) IS NOT NULL;
        hi := lo + interval '1 month';
        IF default_part IS NOT NULL AND NOT locked THEN
            -- ATTACH takes this lock to check the DEFAULT partition anyway: taking it first means
            -- no lock upgrade after the DELETE below.
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', default_part);
            locked := true;
        END IF;
        -- Built beside the table and attached (a lock that lets reads and inserts go on), with a
        -- CHECK that spares ATTACH a scan; its indexes are created by ATTACH (the table is small).
        EXECUTE format('CREATE TABLE public.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING STORAGE INCLUDING COMPRESSION)', part_name, parent);
        EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK ({column} >= %L AND {column} < %L)',
                       part_name, part_name || '_range', lo, hi);
        IF default_part IS NOT NULL THEN
            EXECUTE format('WITH moved AS (DELETE FROM %s WHERE {column} >= $1 AND {column} < $2 RETURNING *) '
                           'INSERT INTO public.%I SELECT * FROM moved', default_part, part_name) USING lo, hi;
        END IF;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                       parent, part_name, lo, hi);
        EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', part_name, part_name || '_range');
{narrow}
        RETURN NEXT part_name;
    END LOOP;
END
$ensure$
"""


def prune_function_sql(spec: AppendOnly) -> sql.Composed:
    return sql.SQL(_PRUNE).format(
        function=sql.Identifier("public", prune_function(spec.table)),
        parent=_regclass_text(spec.table),
        table_name=sql.Literal(spec.table),
        pk=sql.Identifier(spec.pk),
        column=sql.Identifier(spec.time_column),
        retention=sql.Literal(spec.retention_days),
        lock_timeout=sql.Literal(LOCK_TIMEOUT),
    )


def partitions_function_sql(spec: AppendOnly) -> sql.Composed:
    narrow = sql.SQL(_NARROW_GRANTS).format(relation=sql.SQL("format('public.%I', part_name)::regclass"))
    return sql.SQL(_ENSURE).format(
        function=sql.Identifier("public", partitions_function(spec.table)),
        parent=_regclass_text(spec.table),
        table_name=sql.Literal(spec.table),
        column=sql.Identifier(spec.time_column),
        lock_timeout=sql.Literal(LOCK_TIMEOUT),
        narrow=narrow,
    )


def narrow_grants_sql(table: str) -> sql.Composed:
    """A DO block: the table and each of its partitions keep INSERT and SELECT only for non-owners."""
    loop = sql.SQL(_NARROW_GRANTS).format(relation=sql.SQL("rel"))
    return sql.SQL(
        "DO $narrow$\nDECLARE\n    rel regclass;\n    grantee text;\nBEGIN\n"
        "    FOR rel IN SELECT to_regclass({parent}) UNION ALL SELECT inhrelid::regclass FROM pg_inherits\n"
        "               WHERE inhparent = to_regclass({parent})\n"
        "    LOOP\n        CONTINUE WHEN rel IS NULL;\n{loop}    END LOOP;\nEND\n$narrow$"
    ).format(parent=_regclass_text(table), loop=loop)


def install(conn: psycopg.Connection, spec: AppendOnly, *, replace: bool) -> list[str]:
    """Create (or, with `replace`, recreate) both functions on `conn`; returns the signatures written.

    Without `replace` (the migration) an existing function is left as it is: a provisioned one
    keeps its retention and grants. A prune function of an older release (it returned an
    integer) is dropped first either way, as a result type cannot change in place. A function
    created without `replace` is revoked from PUBLIC: only the owner runs it until
    `provision_roles` grants it.
    """
    written = []
    for signature, body, expected in (
        (prune_signature(spec.table), prune_function_sql(spec), PRUNE_RESULT),
        (partitions_signature(spec.table), partitions_function_sql(spec), "SETOF text"),
    ):
        name = signature.as_string(conn)
        (result,) = conn.execute("SELECT pg_get_function_result(to_regprocedure(%s))", [name]).fetchone()
        if result is not None and result != expected:
            conn.execute(sql.SQL("DROP FUNCTION {}").format(signature))
            result = None
        if result is not None and not replace:
            continue
        conn.execute(body)
        if result is None and not replace:
            conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(signature))
        written.append(name)
    return written
