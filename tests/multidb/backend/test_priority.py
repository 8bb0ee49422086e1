"""`import_products --nice N` also lowers the priority of its own PostgreSQL backend
when the server runs on this host (config/multidb/backend/priority.py), read back from
/proc/<pid>/stat of the server process, and puts it back afterwards."""

from __future__ import annotations

import os
import re

import pytest
from django.db import connections

from config.multidb.router import connected_to
from market import imports
from tests.support.jobs import (
    jobs_backend_pids,
    jobs_connections,
    process_nice,
    product_count,
    product_row,
    start_import,
    write_csv,
)
from tests.support.pgcluster import wait_for

pytestmark = [
    pytest.mark.django_db(databases=["default", "blog", "market", "market_jobs"], transaction=True),
    # Renicing a process of another user (the server's) takes root or CAP_SYS_NICE.
    pytest.mark.skipif(os.geteuid() != 0, reason="renicing the server's backends needs root"),
    pytest.mark.usefixtures("no_pools_of_our_own"),  # the job's connections are counted
]


def lowered_backend(log: str) -> int:
    found = re.search(
        r"lowered the CPU priority of its database backend \(pid (\d+), loopback\) "
        r"from nice 0 to 10",
        log,
    )
    assert found, log
    return int(found.group(1))


def test_the_jobs_backend_runs_at_the_lowered_priority_during_an_import(tmp_path, job_env):
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(200_000)))
    proc = start_import(path, job_env, "--batch-size", "1000", "-v", "2")

    # The job's one session is reniced before pass 1: seen in pg_stat_activity, so while the job runs.
    niced = wait_for(
        lambda: (
            [pid for pid in jobs_backend_pids() if process_nice(pid) == 10] or (proc.poll() is not None and "finished")
        ),
        timeout=120,
        what="a jobs:market backend at nice 10",
    )
    assert niced != "finished", "the import finished before its backend was seen"
    assert all(process_nice(pid) == 0 for pid in connections_of_others())
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    assert "200,000 created" in out
    assert niced == [lowered_backend(err)]
    assert "lowered the CPU priority of this process" in err
    wait_for(lambda: jobs_connections() == 0, timeout=10, what="no jobs:market connection left")


def connections_of_others() -> list[int]:
    """Server pids of this test's own market session: never reniced by the job."""
    with connections["market"].cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return [cur.fetchone()[0]]


def test_nice_0_leaves_the_backend_alone(tmp_path, job_env):
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(200_000)))
    proc = start_import(path, job_env, "--batch-size", "1000", "--nice", "0", "-v", "2")

    # A batch committed: the job is past the point where it would have reniced its backend.
    wait_for(lambda: proc.poll() is not None or product_count() > 0, timeout=120, what="a first batch committed")
    seen = {pid: process_nice(pid) for pid in jobs_backend_pids()}
    running = proc.poll() is None
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    assert running, "the import finished before its backend could be read"
    assert seen and set(seen.values()) <= {0, None}, seen  # None: a session that ended meanwhile
    assert "lowered the CPU priority" not in err


def test_the_backend_gets_its_priority_back_when_the_run_ends(tmp_path):
    """In-process (a caller that keeps its pool): the backend goes back to the pool at nice 0."""
    path = write_csv(tmp_path / "small.csv", (product_row(i) for i in range(100)))
    messages: list[tuple[str, int | None]] = []

    def log(message: str) -> None:
        pid = re.search(r"pid (\d+)", message)
        messages.append((message, process_nice(int(pid.group(1))) if pid else None))

    with connected_to("jobs"):
        try:
            result = imports.product_import(path=path, backend_nice=5, log=log)
            with connections["market_jobs"].cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = cur.fetchone()[0]
            after = process_nice(pid)
        finally:
            connections["market_jobs"].close()

    assert result.created == 100
    assert messages[0][0].startswith(
        f"lowered the CPU priority of its database backend (pid {pid}, loopback) from nice 0 to 5"
    )
    assert messages[0][1] == 5  # the backend's nice when the job said so
    assert messages[-1] == (f"database backend (pid {pid}) back to nice 0", 0)
    assert after == 0
