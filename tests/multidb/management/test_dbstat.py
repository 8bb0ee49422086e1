"""`manage.py dbstat`: who holds which connection, from pg_stat_activity, next to the budget."""

import json

from tests.support.ops import connect, uses_test_databases
from tests.support.project import manage

pytestmark = uses_test_databases


def test_dbstat_counts_connections_by_label_and_state_and_ages_idle_transactions(ops_env, ops_urls):
    env = {
        **ops_env,
        "WEB_CONCURRENCY": "3",
        "WEB_THREADS": "2",
        "BLOG_DATABASE_POOL_MAX_SIZE": "5",
        "JOBS_DATABASE_POOL_MAX_SIZE": "2",
    }
    held = [connect(ops_urls["BLOG"], application_name="web:blog") for _ in range(3)]
    stuck = connect(ops_urls["BLOG"], application_name="web:blog", autocommit=False)
    stuck.execute("SELECT 1")  # and never commits: idle in transaction
    try:
        result = manage("dbstat", "--json", env=env)
        text = manage("dbstat", env=env)
        over = manage("dbstat", "--max", "3", env=env)
        fine = manage("dbstat", "--max", "1000", env=env)
    finally:
        stuck.close()
        for conn in held:
            conn.close()

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    blog_db = ops_urls["BLOG"].rsplit("/", 1)[1]
    (blog,) = [d for d in report["databases"] if d["database"] == blog_db]
    assert blog["aliases"] == ["blog", "blog_jobs"]
    by = {(row["application_name"], row["state"]): row["count"] for row in blog["by"]}
    assert by[("web:blog", "idle")] == 3 and by[("web:blog", "idle in transaction")] == 1
    assert blog["connections"] >= 4
    assert blog["oldest_idle_in_transaction_s"] is not None and blog["oldest_idle_in_transaction_s"] >= 0
    # 3 workers x min(pool 5, 2 threads) + the jobs pool's 2 in each worker (audit relay) and one job
    assert blog["budget"] == 3 * 2 + (3 + 1) * 2
    (server,) = report["servers"]
    assert server["available"] == server["max_connections"] - 3 and server["connections"] >= 4

    assert text.returncode == 0
    assert f"/{blog_db} (aliases blog, blog_jobs):" in text.stdout
    assert "web:blog" in text.stdout and "idle in transaction" in text.stdout
    assert "oldest idle in transaction: -" not in text.stdout.split(f"/{blog_db} ")[1].split("\n\n")[0]

    assert over.returncode == 1 and f"/{blog_db} has" in over.stderr and "(more than 3)" in over.stderr
    assert fine.returncode == 0
