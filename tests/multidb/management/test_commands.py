"""dbcheck, labels and serving, against real servers."""

import signal

import pytest
from django.db import connections

from config.multidb.router import connected_to
from tests.support.project import manage, project_env
from tests.support.servers import Gunicorn, cluster_env, http, test_database_urls
from tests.support.topology import ALIASES, PREFIX


def test_database_env():
    return project_env(**{f"{p}_DATABASE_URL": url for p, url in test_database_urls().items()})


test_database_env.__test__ = False


@pytest.mark.django_db(databases=["default"])
def test_dbcheck_lists_every_alias():
    result = manage("dbcheck", env=test_database_env())
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"default", "default_jobs", "blog", "blog_jobs", "market", "market_jobs"}
    assert all(line.rstrip().endswith("ok") for line in rows.values())


@pytest.mark.django_db(databases=["default"])
def test_dbcheck_names_a_hung_and_a_refused_alias_without_waiting_forever(make_cluster):
    hung = make_cluster("hung")
    hung.create_database("market")
    hung.hang()
    env = {**test_database_env(), "MARKET_DATABASE_URL": hung.url("market", password="s3cr3t-pw")}
    env.update(
        BLOG_DATABASE_URL="postgres://app:s3cr3t-pw@127.0.0.1:1/blog",
        MARKET_DATABASE_CONNECT_TIMEOUT="1",
        BLOG_DATABASE_CONNECT_TIMEOUT="1",
    )
    result = manage("dbcheck", env=env, timeout=20)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "unreachable: blog, blog_jobs, market, market_jobs" in out
    assert "s3cr3t-pw" not in out
    ok_rows = [line for line in result.stdout.splitlines() if line.startswith("default")]
    assert ok_rows and all(line.rstrip().endswith("ok") for line in ok_rows)


@pytest.mark.django_db(
    databases=["default", "blog", "market", "default_jobs", "blog_jobs", "market_jobs"], transaction=True
)
def test_connections_are_labelled_with_role_and_alias():
    def label(alias):
        with connections[alias].cursor() as cur:
            cur.execute("SELECT current_setting('application_name')")
            return cur.fetchone()[0]

    assert label("blog") == "cli:blog"
    with connected_to("jobs"):
        assert label("blog_jobs") == "jobs:blog"
        assert label("market_jobs") == "jobs:market"


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_gunicorn_serves_labels_web_and_exits_0_on_sigterm_leaving_no_connection():
    db = {PREFIX[a]: connections[a].settings_dict for a in ALIASES}
    urls = {p: f"postgres://{sd['USER'] or 'postgres'}@{sd['HOST']}:{sd['PORT']}/{sd['NAME']}" for p, sd in db.items()}
    server = Gunicorn(cluster_env(urls), workers=2, threads=2).start()
    try:
        assert http("GET", server.url("/healthz"))[:2] == (200, {"status": "ok"})
        status, body, _ = http("GET", server.url("/api/users/999999"))
        assert (status, body["error"]["code"]) == (404, "user_not_found")
        with connections["default"].cursor() as cur:
            cur.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'web:%%'"
            )
            assert {r[0] for r in cur.fetchall()} >= {"web:default"}
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()
    with connections["default"].cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'web:%%' AND datname = ANY(%s)",
            [[sd["NAME"] for sd in db.values()]],
        )
        assert cur.fetchone()[0] == 0
