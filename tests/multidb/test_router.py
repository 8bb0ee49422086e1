"""The router: each app on its alias, shared apps on default, never an unanswered allow_migrate."""

import uuid

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connections, router

from config.multidb.router import TopologyRouter, connected_to, home_alias
from tests.support.project import manage, project_env
from tests.support.topology import PREFIXES

SHARED_APPS = {"auth", "contenttypes", "sessions", "admin", "audit", "axes"}


def test_every_app_has_one_home_and_allow_migrate_is_never_none():
    r = TopologyRouter()
    for app in apps.get_app_configs():
        answers = {alias: r.allow_migrate(alias, app.label) for alias in settings.DATABASES}
        assert None not in answers.values(), app.label
        assert [a for a, yes in answers.items() if yes] == [home_alias(app.label)], app.label
    for label in SHARED_APPS:
        assert home_alias(label) == "default"
    assert home_alias("blog") == "blog"
    assert home_alias("market") == "market"


def test_reads_and_writes_follow_the_app_and_the_jobs_role():
    blog_model = apps.get_app_config("blog").get_model("AuditOutbox")
    user_model = apps.get_model("auth", "User")
    assert router.db_for_write(blog_model) == "blog"
    assert router.db_for_read(user_model) == "default"
    with connected_to("jobs"):
        assert router.db_for_write(blog_model) == "blog_jobs"
        assert router.db_for_read(user_model) == "default_jobs"
    assert router.db_for_write(blog_model) == "blog"
    with pytest.raises(ValueError):
        with connected_to("reporting"):
            pass


def test_relations_only_within_one_database():
    r = TopologyRouter()
    user_model = apps.get_model("auth", "User")
    group_model = apps.get_model("auth", "Group")
    blog_model = apps.get_app_config("blog").get_model("AuditOutbox")
    assert r.allow_relation(user_model(), group_model()) is True
    assert r.allow_relation(user_model(), blog_model()) is False
    jobs_user = user_model()
    jobs_user._state.db = "default_jobs"
    assert r.allow_relation(jobs_user, group_model()) is True


@pytest.fixture
def fresh_databases():
    """Three empty databases on the test server, dropped afterwards."""
    sd = connections["default"].settings_dict
    server = dict(
        host=sd["HOST"], port=sd["PORT"] or 5432, user=sd["USER"] or "postgres", password=sd["PASSWORD"] or None
    )
    names = {p: f"fresh_{p.lower()}_{uuid.uuid4().hex[:8]}" for p in PREFIXES}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    auth = f"{server['user']}:{server['password']}@" if server["password"] else f"{server['user']}@"
    urls = {p: f"postgres://{auth}{server['host']}:{server['port']}/{n}" for p, n in names.items()}
    yield server, names, urls
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_of(server, dbname):
    """The database's tables, a partitioned table counted once (its monthly partitions are its own)."""
    with psycopg.connect(dbname=dbname, **server) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
        return {r[0] for r in rows}


def test_migrate_all_puts_each_table_in_exactly_one_database(fresh_databases):
    server, names, urls = fresh_databases
    env = project_env(**{f"{p}_DATABASE_URL": u for p, u in urls.items()})
    result = manage("migrate_all", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["default", "blog", "market"]

    alias_db = {"default": names["SHARED"], "blog": names["BLOG"], "market": names["MARKET"]}
    present = {alias: tables_of(server, db) - {"django_migrations"} for alias, db in alias_db.items()}
    expected = {alias: set() for alias in alias_db}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            expected[home_alias(model._meta.app_label)].add(model._meta.db_table)
    assert present == expected
    # Content types and permissions exist only where their tables are.
    with psycopg.connect(dbname=names["SHARED"], **server) as conn:
        assert conn.execute("SELECT count(*) FROM django_content_type").fetchone()[0] > 0


def test_migrate_all_twice_is_a_no_op(fresh_databases):
    server, names, urls = fresh_databases
    env = project_env(**{f"{p}_DATABASE_URL": u for p, u in urls.items()})
    assert manage("migrate_all", env=env, timeout=180).returncode == 0
    again = manage("migrate_all", env=env, timeout=180)
    assert again.returncode == 0, again.stderr
