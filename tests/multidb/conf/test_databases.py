"""Direct connections bind parameters on the server and prepare what they repeat;
a transaction pooler never gets a prepared statement (tests/multidb/conf/test_env.py)."""

import uuid

import pytest
from django.db import connections

from config.multidb.conf.databases import PREPARE_AFTER

pytestmark = pytest.mark.django_db(databases=["default"], transaction=True)


def prepared(cursor) -> list[str]:
    cursor.execute("SELECT statement FROM pg_prepared_statements")
    return [row[0] for row in cursor.fetchall()]


def test_a_repeated_statement_is_prepared_once_on_its_connection():
    marker = f"prepared-test-{uuid.uuid4().hex}"  # a text no earlier test on this connection has run
    sql = f'SELECT id, username, email FROM "auth_user" WHERE id = %s /* {marker} */'
    connection = connections["default"]
    with connection.cursor() as cursor:
        for i in range(PREPARE_AFTER - 1):
            cursor.execute(sql, [i])
        assert not any(marker in s for s in prepared(cursor))
        for i in range(3):
            cursor.execute(sql, [i])
        assert sum(marker in s for s in prepared(cursor)) == 1
        cursor.execute("SELECT %s::int + %s::int", [40, 2])  # parameters travel apart from the text
        assert cursor.fetchone() == (42,)
