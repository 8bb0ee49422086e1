"""The pure pieces of config/multidb/replicas.py: WAL positions and which statements count as writes."""

import pytest

from config.multidb.replicas import format_lsn, is_read_only_sql, parse_lsn, writes_data


@pytest.mark.parametrize(
    "text, value",
    [
        ("0/0", 0),
        ("0/16B3F20", 0x16B3F20),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_wal_positions_parse_and_format_like_pg_lsn(text, value):
    assert parse_lsn(text) == value
    assert format_lsn(value) == text.upper()


def test_wal_positions_order_numerically_not_as_text():
    assert parse_lsn("0/A0000000") > parse_lsn("0/9FFFFFFF")
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


@pytest.mark.parametrize("text", ["", "16B3F20", "0/", "G/1", "0/1 ", "1/2/3", "123456789/0"])
def test_anything_else_is_not_a_wal_position(text):
    with pytest.raises(ValueError):
        parse_lsn(text)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  /* comment */ -- line\n select a FROM t",
        "(SELECT 1) UNION (SELECT 2)",
        'SELECT "update", "created_at" FROM t',  # quoted identifiers are not keywords
        "SELECT 'delete from t' FROM t",  # nor are string literals
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SHOW TimeZone",
        "SAVEPOINT s1",
        "RELEASE SAVEPOINT s1",
        "ROLLBACK TO SAVEPOINT s1",
        "SET TIME ZONE 'UTC'",
        "EXPLAIN SELECT 1",
    ],
)
def test_reads_and_transaction_control_may_run_on_a_replica(sql):
    assert is_read_only_sql(sql)
    assert not writes_data(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "update t set a = 1",
        "DELETE FROM t",
        "MERGE INTO t USING s ON true DO NOTHING",
        "TRUNCATE t",
        "COPY t FROM STDIN",
        "CREATE TABLE t (a int)",
        "LOCK TABLE t",
        "CALL p()",
        "DO $$ BEGIN END $$",
        "WITH gone AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM gone",
        "SELECT a INTO b FROM t",
        "EXPLAIN ANALYZE DELETE FROM t",
    ],
)
def test_writes_are_writes(sql):
    assert not is_read_only_sql(sql)
    assert writes_data(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE OF t SKIP LOCKED",
        "SELECT * FROM t FOR SHARE",
    ],
)
def test_locking_reads_never_run_on_a_replica_but_are_not_recorded_as_writes(sql):
    assert not is_read_only_sql(sql)
    assert not writes_data(sql)
