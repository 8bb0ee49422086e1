"""Helpers for long-job tests: CSV files, the job as a real subprocess, and
what PostgreSQL says about it (rows, connections, locks)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from django.db import connections

from tests.support.project import ROOT

HEADER = ("sku", "name", "price_cents", "stock")


def product_row(i: int, *, price_bump: int = 0) -> tuple[str, str, int, int]:
    return (f"SKU-{i:07d}", f'Product {i}, "deluxe"' if i % 7 == 0 else f"Product {i}", 100 + i + price_bump, i % 500)


def write_csv(path: Path, rows: Iterable[Iterable], header: Iterable[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def start_import(path: Path, env: dict[str, str], *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "import_products", str(path), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def run_import(path: Path, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "import_products", str(path), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def market_query(sql: str, params: tuple = ()) -> list[tuple]:
    with connections["market"].cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def products() -> dict[str, tuple[str, int, int]]:
    return {
        sku: (name, price, stock)
        for sku, name, price, stock in market_query("SELECT sku, name, price_cents, stock FROM market_product")
    }


def product_count() -> int:
    return market_query("SELECT count(*) FROM market_product")[0][0]


def jobs_connections() -> int:
    """Connections labelled jobs:market on this test's market database."""
    return market_query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'jobs:market'"
    )[0][0]


def import_lock_holders() -> int:
    from market.imports import LOCK_KEY

    classid, objid = (LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF
    return market_query(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
        (classid, objid),
    )[0][0]


def sample_while(proc: subprocess.Popen, probe: Callable[[], int]) -> list[int]:
    """`probe()` in a loop until the process exits; every value seen."""
    seen = []
    while proc.poll() is None:
        seen.append(probe())
    return seen


def jobs_backend_pids() -> list[int]:
    """Server pids of the jobs:market sessions on this test's market database."""
    return [
        pid
        for (pid,) in market_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'jobs:market' ORDER BY pid"
        )
    ]


def process_nice(pid: int) -> int | None:
    """The nice value of a process of this host, from /proc/<pid>/stat (field 19); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[16])  # fields[0] is field 3 (state)
