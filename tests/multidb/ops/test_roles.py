"""Least privilege on a real server with password (SCRAM) authentication:
`provision_roles`, then migrate as the owners, serve with the app roles and run
jobs with the jobs roles; the audit trail is append-only."""

from __future__ import annotations

import json
import secrets
import uuid

import psycopg
import pytest

from tests.support.jobs import product_row, write_csv
from tests.support.pgbouncer import PgBouncer
from tests.support.pgcluster import PgCluster, as_postgres, wait_for
from tests.support.project import manage
from tests.support.servers import Gunicorn, cluster_env, http
from tests.support.topology import database_names

pytestmark = pytest.mark.cluster

DBS = database_names("roles")
ROLES = [f"platform_{db}_{kind}" for db in ("shared", "blog", "market") for kind in ("owner", "app", "jobs")]
RETENTION_DAYS = 365  # provision_roles' default
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def server():
    """A cluster that asks every role but postgres for a SCRAM password over TCP, and logs every statement."""
    import subprocess

    cluster = PgCluster(
        "roles",
        settings={"log_statement": "all", "log_min_error_statement": "error", "password_encryption": "scram-sha-256"},
    )
    subprocess.run(as_postgres(["sh", "-c", f"cat > {cluster.data / 'pg_hba.conf'}"]), input=HBA, text=True, check=True)
    cluster.start()
    for name in DBS.values():
        cluster.create_database(name)
    passwords = {role: secrets.token_urlsafe(18) for role in ROLES}
    try:
        yield cluster, passwords
    finally:
        cluster.destroy()


def _urls(cluster: PgCluster, passwords: dict[str, str], kind: str) -> dict[str, str]:
    return {
        p: cluster.url(db, user=f"platform_{p.lower()}_{kind}", password=passwords[f"platform_{p.lower()}_{kind}"])
        for p, db in DBS.items()
    }


def _connect(cluster, passwords, role: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=cluster.port,
        user=role,
        password=passwords[role],
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture(scope="module")
def provisioned(server):
    cluster, passwords = server
    env = cluster_env(
        _urls(cluster, passwords, "app"),
        BLOG_DATABASE_STATEMENT_TIMEOUT_MS="4321",
        **{f"{role.upper()}_PASSWORD": pw for role, pw in passwords.items()},
    )
    result = manage("provision_roles", "--superuser-url", cluster.url("postgres"), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert not [pw for pw in passwords.values() if pw in output]
    # Migrations run as each database's owner.
    owner_env = cluster_env(_urls(cluster, passwords, "owner"))
    migrated = manage("migrate_all", env=owner_env, timeout=180)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return cluster, passwords, env, output


def test_provision_refuses_a_password_on_the_command_line(server):
    cluster, passwords = server
    env = cluster_env(_urls(cluster, passwords, "app"))
    result = manage("provision_roles", "--superuser-url", cluster.url("postgres", password="hunter2-secret"), env=env)
    assert result.returncode != 0
    assert "must not contain a password" in result.stderr and "hunter2-secret" not in result.stderr


def test_roles_are_confined_to_their_own_database(provisioned):
    cluster, passwords, _, _ = provisioned
    # The blog roles cannot open another database on the same server...
    for role in ("platform_blog_app", "platform_blog_jobs", "platform_blog_owner"):
        for other in ("roles_market", "roles_shared", "postgres"):
            if other == "postgres":
                continue  # the maintenance database is not the platform's; PUBLIC keeps CONNECT there
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                _connect(cluster, passwords, role, other)
    # ...and inside their own, the app role only reads and writes rows.
    with _connect(cluster, passwords, "platform_blog_app", "roles_blog") as conn:
        assert conn.execute("SELECT count(*) FROM blog_post").fetchone()[0] >= 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE intruder (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE intruder (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE blog_post")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE blog_post")
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "4321ms"
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "10s"
    # A brand-new role gets nothing from PUBLIC.
    with cluster.connect() as admin:
        admin.execute("SET log_statement = 'none'")
        admin.execute("CREATE ROLE nobody LOGIN PASSWORD 'nobody-pw-1234'")
    for db in DBS.values():
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(
                host="127.0.0.1",
                port=cluster.port,
                user="nobody",
                password="nobody-pw-1234",
                dbname=db,
                connect_timeout=5,
            )


def test_tables_created_later_by_the_owner_are_usable_by_the_app(provisioned):
    cluster, passwords, _, _ = provisioned
    with _connect(cluster, passwords, "platform_market_owner", "roles_market") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS later_table (id bigserial PRIMARY KEY, note text)")
    with _connect(cluster, passwords, "platform_market_app", "roles_market") as conn:
        conn.execute("INSERT INTO later_table (note) VALUES ('ok')")
        assert conn.execute("SELECT count(*) FROM later_table").fetchone()[0] >= 1


def test_no_password_reaches_the_server_log(provisioned):
    cluster, passwords, _, _ = provisioned
    log = cluster.log.read_text()
    assert "statement: CREATE TABLE" in log  # the server does log every statement (log_statement=all)...
    assert "PASSWORD" not in log and "SCRAM-SHA-256$" not in log  # ...but not these
    assert not [role for role, pw in passwords.items() if pw in log]


def test_app_serves_reads_and_writes_with_the_app_roles(provisioned):
    cluster, passwords, env, _ = provisioned
    owner_env = cluster_env(_urls(cluster, passwords, "owner"))
    made = manage(
        "createsuperuser", "--noinput", "--username", "roles_staff", "--email", "s@example.com", env=owner_env
    )
    assert made.returncode == 0, made.stderr
    token = manage("create_api_token", "roles_staff", env=env)  # as the app role
    assert token.returncode == 0, token.stderr
    auth = {"Authorization": f"Token {token.stdout.strip().splitlines()[-1]}"}
    with Gunicorn(env, workers=1, threads=2).running() as server:
        status, body, _ = http(
            "POST",
            server.url("/api/market/products"),
            {"sku": "ROLE-1", "name": "Role", "price_cents": 100, "stock": 5},
            headers=auth,
        )
        assert status == 201, body
        assert http("GET", server.url("/api/market/products/ROLE-1"))[0] == 200
        status, body, _ = http(
            "POST",
            server.url("/api/blog/posts"),
            {"title": "Least privilege", "body": "works", "status": "published"},
            headers=auth,
        )
        assert status == 201, body
        assert http("GET", server.url("/api/blog/posts"))[0] == 200
        assert http("GET", server.url("/readyz"))[0] == 200
        # The relay delivers with INSERT ... ON CONFLICT DO NOTHING: INSERT and SELECT are enough.
        with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
            wait_for(
                lambda: conn.execute(
                    "SELECT count(*) FROM audit_auditevent WHERE model = 'market.product' AND action = 'create'"
                ).fetchone()[0],
                timeout=10,
                what="the product's audit event relayed",
            )
        log = server.output()
    assert not [pw for pw in passwords.values() if pw in log]


def _insert_event(conn: psycopg.Connection, age_days: float) -> str:
    event_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO audit_auditevent (id, occurred_at, recorded_at, database, actor, action, model, object_pk, "
        "changes) VALUES (%s, now() - make_interval(days => %s), now(), 'market', 'test', 'update', "
        "'market.product', '1', '{}')",
        (event_id, age_days),
    )
    return event_id


def _assert_append_only(cluster, passwords) -> None:
    for role in ("platform_shared_app", "platform_shared_jobs"):
        with _connect(cluster, passwords, role, "roles_shared") as conn:
            event_id = _insert_event(conn, 1)
            assert conn.execute("SELECT count(*) FROM audit_auditevent WHERE id = %s", (event_id,)).fetchone() == (1,)
            for statement in (
                "UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s",
                "DELETE FROM audit_auditevent WHERE id = %s",
                "SELECT id FROM audit_auditevent WHERE id = %s FOR UPDATE",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
                    conn.execute(statement, (event_id,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
                conn.execute("TRUNCATE audit_auditevent")
            # Nor through a partition (the event's own, or the safety net), nor by dropping one.
            (partition,) = conn.execute(
                "SELECT tableoid::regclass::text FROM audit_auditevent WHERE id = %s", (event_id,)
            ).fetchone()
            for table in (partition, "audit_auditevent_default"):
                for statement in (f"DELETE FROM {table}", f"UPDATE {table} SET actor = 'mallory'", f"TRUNCATE {table}"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table"):
                        conn.execute(statement)
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                    conn.execute(f"DROP TABLE {table}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                    conn.execute(f"ALTER TABLE audit_auditevent DETACH PARTITION {table}")


def test_the_app_and_jobs_roles_may_only_insert_and_read_audit_events(provisioned):
    cluster, passwords, env, _ = provisioned
    # Provisioned before the table existed: the audit migration narrowed the owner's default grants.
    _assert_append_only(cluster, passwords)
    # Provisioned again now that it exists: provision_roles narrows them itself.
    again = manage("provision_roles", "--superuser-url", cluster.url("postgres"), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_append_only(cluster, passwords)
    # The web role cannot even call the pruning function.
    with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            conn.execute("SELECT audit_auditevent_prune(%s, 10)", (RETENTION_DAYS,))


def test_the_web_role_makes_partitions_ahead_that_stay_append_only(provisioned):
    cluster, passwords, _, _ = provisioned
    with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"):
            conn.execute(
                "CREATE TABLE audit_auditevent_y2099m01 PARTITION OF audit_auditevent "
                "FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
            )
        # Through the owner's function: 30 months back (as for late events) to 3 ahead.
        created = [
            r[0] for r in conn.execute("SELECT audit_auditevent_partitions_ensure(3, now() - interval '30 months')")
        ]
        assert len(created) >= 25
        for name in created:
            owner, app_may = conn.execute(
                "SELECT pg_get_userbyid(relowner), ARRAY[has_table_privilege(%s, oid, 'SELECT'), "
                "has_table_privilege(%s, oid, 'INSERT'), has_table_privilege(%s, oid, 'UPDATE'), "
                "has_table_privilege(%s, oid, 'DELETE'), has_table_privilege(%s, oid, 'TRUNCATE')] "
                "FROM pg_class WHERE relname = %s",
                ("platform_shared_app",) * 5 + (name,),
            ).fetchone()
            assert (owner, app_may) == ("platform_shared_owner", [True, True, False, False, False]), name


def test_only_the_jobs_role_prunes_and_only_events_older_than_the_retention(provisioned):
    cluster, passwords, app_env, _ = provisioned
    jobs_env = cluster_env(_urls(cluster, passwords, "jobs"))
    with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
        # A month goes whole once all of it is past the retention: 40 days past it always is.
        old = _insert_event(conn, RETENTION_DAYS + 40)
        kept = _insert_event(conn, RETENTION_DAYS - 5)

    # Below the retention the database refuses, whoever asks for how little.
    with _connect(cluster, passwords, "platform_shared_jobs", "roles_shared") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"kept for {RETENTION_DAYS} days"):
            conn.execute("SELECT audit_auditevent_prune(0, 1000)")
    short = manage("audit_prune", "--older-than", str(RETENTION_DAYS - 10), env=jobs_env)
    assert short.returncode != 0
    assert f"refused by the database: rows of audit_auditevent are kept for {RETENTION_DAYS} days" in short.stderr
    as_web = manage("audit_prune", "--older-than", str(RETENTION_DAYS), env=app_env)
    assert as_web.returncode != 0 and "permission denied for function" in as_web.stderr

    pruned = manage("audit_prune", "--older-than", str(RETENTION_DAYS), env=jobs_env)

    assert pruned.returncode == 0, pruned.stderr
    assert "dropped partition public.audit_auditevent_y" in pruned.stdout
    with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
        left = {str(r[0]) for r in conn.execute("SELECT id FROM audit_auditevent WHERE id IN (%s, %s)", (old, kept))}
    assert left == {kept}


def test_only_the_market_jobs_role_may_create_temporary_tables(provisioned):
    cluster, passwords, _, _ = provisioned
    for role, db in (
        ("platform_market_app", "roles_market"),
        ("platform_blog_jobs", "roles_blog"),
        ("platform_shared_jobs", "roles_shared"),
    ):
        with _connect(cluster, passwords, role, db) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary tables"):
                conn.execute("CREATE TEMP TABLE staging (id int)")
    with _connect(cluster, passwords, "platform_market_jobs", "roles_market") as conn:
        conn.execute("CREATE TEMP TABLE staging (id int)")
        # The jobs role keeps its own, longer statement timeout (JOBS_DATABASE_STATEMENT_TIMEOUT_MS).
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "10min"


def test_import_products_runs_with_the_jobs_roles_and_is_audited(provisioned, tmp_path):
    cluster, passwords, app_env, _ = provisioned
    path = write_csv(tmp_path / "roles.csv", (product_row(i) for i in range(3000)))
    # The web role cannot: no TEMP, and the job says what it needs.
    refused = manage("import_products", str(path), "--batch-size", "1000", env=app_env, timeout=120)
    assert refused.returncode != 0
    assert "run it with the jobs role" in refused.stderr

    imported = manage(
        "import_products",
        str(path),
        "--batch-size",
        "1000",
        env=cluster_env(_urls(cluster, passwords, "jobs")),
        timeout=120,
    )

    assert imported.returncode == 0, imported.stderr
    assert "3,000 created" in imported.stdout
    with _connect(cluster, passwords, "platform_shared_app", "roles_shared") as conn:
        events = [
            json.loads(c) if isinstance(c, str) else c
            for (c,) in conn.execute(
                "SELECT changes FROM audit_auditevent WHERE action = 'bulk' AND model = 'market.product'"
            )
        ]
    assert [e["counts"]["created"] for e in events] == [3000]


def test_role_timeouts_hold_behind_a_transaction_pooler(provisioned):
    cluster, passwords, env, _ = provisioned
    # PgBouncer reaches the server over its Unix socket (trust), clients over TCP.
    with PgBouncer(
        upstream_port=cluster.port, upstream_host=str(cluster.root), user="platform_blog_app"
    ).running() as bouncer:
        pooled = {
            **env,
            "BLOG_DATABASE_URL": f"postgres://platform_blog_app@127.0.0.1:{bouncer.port}/roles_blog",
            "BLOG_DATABASE_POOLER": "transaction",
        }
        code = (
            "from django.db import connections\n"
            "c = connections['blog'].cursor()\n"
            "c.execute('SHOW statement_timeout'); print(c.fetchone()[0])\n"
            "c.execute('SHOW idle_in_transaction_session_timeout'); print(c.fetchone()[0])\n"
        )
        result = manage("shell", "--no-imports", "-c", code, env=pooled)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["4321ms", "10s"]
