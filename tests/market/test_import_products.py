"""`manage.py import_products`, run as a user runs it: a real subprocess on the
test databases, watched from PostgreSQL (rows, pg_stat_activity, pg_locks)."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

import pytest
from django.db import connections

from audit.models import AuditEvent
from market.models import Account
from tests.support.jobs import (
    ROOT,
    import_lock_holders,
    jobs_connections,
    market_query,
    product_count,
    product_row,
    products,
    run_import,
    start_import,
    write_csv,
)
from tests.support.pgcluster import wait_for
from tests.support.project import manage
from tests.support.servers import Gunicorn, http

# Every domain database: the subprocesses (gunicorn's boot check included) connect to all of them.
pytestmark = [
    pytest.mark.django_db(databases=["default", "blog", "market", "market_jobs"], transaction=True),
    pytest.mark.usefixtures("no_pools_of_our_own"),  # the job's connections are counted
]


def bulk_events() -> list[dict]:
    return [
        e.changes["counts"]
        for e in AuditEvent.objects.filter(action="bulk", model="market.product").order_by("occurred_at")
    ]


def distinct_skus() -> int:
    return market_query("SELECT count(DISTINCT sku) FROM market_product")[0][0]


def test_imports_100k_rows_within_the_jobs_budget_while_the_web_answers(tmp_path, job_env):
    seed = write_csv(tmp_path / "seed.csv", [("SEED-1", "Seed", 500, 3)])
    assert run_import(seed, job_env).returncode == 0
    big = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(100_000)))

    with Gunicorn(job_env, workers=1, threads=4).running() as server:
        url = server.url("/api/market/products/SEED-1")
        assert http("GET", url)[0] == 200
        proc = start_import(big, job_env, "--batch-size", "10000")
        jobs_seen, statuses = [], []
        while proc.poll() is None:
            jobs_seen.append(jobs_connections())
            statuses.append(http("GET", url, timeout=5)[0])
        out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "100,000 created, 0 updated, 0 unchanged (10 batches" in out
    assert product_count() == distinct_skus() == 100_001
    assert products()["SKU-0000007"] == ('Product 7, "deluxe"', 107, 7)
    # The job was seen, and never above its pool (JOBS_DATABASE_POOL_MAX_SIZE, default 2).
    assert 1 <= max(jobs_seen) <= 2, jobs_seen
    # The web kept answering from its own pool all along.
    assert statuses and set(statuses) == {200}, statuses
    # Not a terminal: plain progress lines, ending at 100%.
    assert "importing: 100,000/100,000 rows (100.0%)" in err and "rows/s eta" in err
    # One audit event per run, with counts.
    assert bulk_events()[-1] == {
        "rows": 100_000,
        "created": 100_000,
        "updated": 0,
        "unchanged": 0,
        "batches": 10,
        "completed": True,
    }
    wait_for(lambda: jobs_connections() == 0, timeout=10, what="no jobs:market connection left")


def test_a_rerun_updates_changed_rows_and_duplicates_nothing(tmp_path, job_env):
    rows = [product_row(i) for i in range(5000)]
    first = run_import(write_csv(tmp_path / "a.csv", rows), job_env, "--batch-size", "1000")
    assert first.returncode == 0, first.stderr
    stamps = dict(market_query("SELECT sku, updated FROM market_product"))

    changed = list(rows)
    for i in (3, 1500, 4999):
        changed[i] = product_row(i, price_bump=7)
    changed[10] = (rows[10][0], "Renamed", rows[10][2], 42)
    added = [product_row(i) for i in range(5000, 5003)]
    # Columns in another order are fine: the header names them.
    reordered = [(name, stock, sku, price) for sku, name, price, stock in changed + added]
    second = run_import(
        write_csv(tmp_path / "b.csv", reordered, header=("name", "stock", "sku", "price_cents")),
        job_env,
        "--batch-size",
        "1000",
    )

    assert second.returncode == 0, second.stderr
    assert "3 created, 4 updated, 4,996 unchanged" in second.stdout
    assert product_count() == distinct_skus() == 5003
    assert products() == {sku: (name, price, stock) for sku, name, price, stock in changed + added}
    after = dict(market_query("SELECT sku, updated FROM market_product"))
    touched = {rows[i][0] for i in (3, 10, 1500, 4999)}
    assert all(after[sku] > stamps[sku] for sku in touched)
    assert all(after[sku] == stamps[sku] for sku in stamps if sku not in touched)  # unchanged rows not rewritten
    assert [e["updated"] for e in bulk_events()] == [0, 4]


BAD_ROWS = {
    "bad integer": (("SKU-X", "X", "12x", "1"), "line 2502, column price_cents: must be a non-negative integer"),
    "negative": (("SKU-X", "X", "12", "-1"), "line 2502, column stock: must be a non-negative integer"),
    "missing column": (("SKU-X", "X", "12"), "line 2502, column stock: missing"),
    "empty sku": (("", "X", "12", "1"), "line 2502, column sku: must not be empty"),
    "empty name": (("SKU-X", "  ", "12", "1"), "line 2502, column name: must be non-empty"),
    "sku twice": (("SKU-0000010", "X", "12", "1"), "line 2502, column sku: 'SKU-0000010' already appears on line 12"),
    "too large": (("SKU-X", "X", "12", "2147483648"), "line 2502, column stock: must be at most 2147483647"),
    # A quoted line break would pass a `$`-anchored pattern, then break COPY after two batches committed.
    "sku ending in a line break": (("SKU-X\n", "X", "12", "1"), "line 2502, column sku: must not start or end"),
    "sku with a space": ((" SKU-X", "X", "12", "1"), "line 2502, column sku: must not start or end"),
    "sku too long": (("S" * 65, "X", "12", "1"), "line 2502, column sku: must be at most 64 characters"),
    "NUL in the sku": (("SKU\x00X", "X", "12", "1"), "line 2502, column sku: must not contain a NUL character"),
    "NUL in the name": (("SKU-X", "X\x00Y", "12", "1"), "line 2502, column name: must not contain a NUL character"),
    "name too long": (("SKU-X", "N" * 201, "12", "1"), "line 2502, column name: must be non-empty text of at most 200"),
    "non-ASCII digits": (("SKU-X", "X", "\u0661\u0662", "1"), "line 2502, column price_cents: must be a non-negative"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_row_stops_the_import_before_anything_is_written(tmp_path, job_env, case):
    seed = write_csv(tmp_path / "seed.csv", [("SKU-0000001", "Before", 1, 1)])
    assert run_import(seed, job_env).returncode == 0
    bad_row, message = BAD_ROWS[case]
    # Two whole batches of good rows come before the bad one: they must not be written either.
    rows = [product_row(i) for i in range(3000)]
    rows.insert(2500, bad_row)

    result = run_import(write_csv(tmp_path / "bad.csv", rows), job_env, "--batch-size", "1000")

    assert result.returncode != 0
    assert message in result.stderr
    assert products() == {"SKU-0000001": ("Before", 1, 1)}
    assert len(bulk_events()) == 1  # the seed's run only


@pytest.mark.parametrize(
    "column, raw",
    [("name", b"Caf\xe9"), ("name", b"\xed\xa0\x80 surrogate"), ("sku", b"SKU-\xff"), ("stock", b"1\xff")],
    ids=["latin-1 name", "encoded surrogate in the name", "bad byte in the sku", "bad byte in the stock"],
)
def test_undecodable_bytes_stop_the_import_naming_line_and_column(tmp_path, job_env, column, raw):
    rows = [product_row(i) for i in range(3000)]
    bad = {"sku": "SKU-X", "name": "X", "price_cents": "12", "stock": "1", column: "@BAD@"}
    rows.insert(2500, (bad["sku"], bad["name"], bad["price_cents"], bad["stock"]))
    path = write_csv(tmp_path / "bad.csv", rows)
    path.write_bytes(path.read_bytes().replace(b"@BAD@", raw))

    result = run_import(path, job_env, "--batch-size", "1000")

    assert result.returncode != 0
    assert f"line 2502, column {column}: is not valid UTF-8" in result.stderr
    assert product_count() == 0 and bulk_events() == []


def test_a_bad_header_is_refused_naming_the_column(tmp_path, job_env):
    result = run_import(
        write_csv(tmp_path / "h.csv", [("A-1", "A", "1")], header=("sku", "name", "price_cents")), job_env
    )
    assert result.returncode != 0
    assert "line 1, column stock: missing from the header" in result.stderr
    assert product_count() == 0


def test_a_rerun_after_a_crash_finishes_the_job_without_duplicates(tmp_path, job_env):
    total, batch = 200_000, 1000
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(total)))
    proc = start_import(path, job_env, "--batch-size", str(batch), stderr=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None or product_count() > 0, timeout=120, what="a first batch committed")
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.kill()
    proc.wait()

    committed = product_count()
    assert 0 < committed < total
    assert committed % batch == 0  # whole batches only
    wait_for(lambda: jobs_connections() == 0, timeout=10, what="the server to drop the killed job's connection")

    rerun = run_import(path, job_env, "--batch-size", str(batch))

    assert rerun.returncode == 0, rerun.stderr
    assert f"{total - committed:,} created, 0 updated, {committed:,} unchanged" in rerun.stdout
    assert product_count() == distinct_skus() == total


def outbox_rows() -> int:
    return market_query("SELECT count(*) FROM market_auditoutbox")[0][0]


def test_a_killed_run_leaves_one_event_counting_the_batches_it_committed(tmp_path, job_env):
    total, batch = 200_000, 1000
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(total)))
    proc = start_import(path, job_env, "--batch-size", str(batch), stderr=subprocess.DEVNULL)
    # Two batches: the event was written with the first and brought up to date by the second.
    wait_for(lambda: proc.poll() is not None or product_count() >= 2 * batch, timeout=120, what="two batches")
    os.kill(proc.pid, signal.SIGSTOP)  # alive, between two statements, while a relay sweeps
    try:
        assert proc.poll() is None, "the import finished before it could be killed"
        Account.objects.create(balance_cents=5)  # another event in the same outbox
        swept = manage("audit_relay", env=job_env)
        assert swept.returncode == 0, swept.stderr
        # The sweep delivered the other event, but the run's waits while the run lives:
        # nothing half-counted is delivered.
        assert AuditEvent.objects.filter(model="market.account").count() == 1
        assert outbox_rows() == 1 and bulk_events() == []
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: jobs_connections() == 0, timeout=10, what="the server to drop the killed job's sessions")
    committed = product_count()
    assert 0 < committed < total and committed % batch == 0

    relayed = manage("audit_relay", env=job_env)

    assert relayed.returncode == 0, relayed.stderr
    assert outbox_rows() == 0
    assert bulk_events() == [
        {
            "rows": total,
            "created": committed,
            "updated": 0,
            "unchanged": 0,
            "batches": committed // batch,
            "completed": False,
        }
    ]


def test_a_run_whose_event_was_taken_mid_run_goes_on_in_a_new_one_with_the_same_run(tmp_path, job_env):
    total, batch = 100_000, 1000
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(total)))
    proc = start_import(path, job_env, "--batch-size", str(batch), stderr=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None or product_count() >= 2 * batch, timeout=120, what="two batches")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        assert proc.poll() is None, "the import finished before it could be stopped"
        # The session holding the event back is lost (an operator, a network cut): a sweep takes the event.
        # (The holder's SELECT ... FOR KEY SHARE is the only RowShareLock on the outbox.)
        held = market_query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE relation = 'market_auditoutbox'::regclass AND mode = 'RowShareLock' AND granted"
        )
        assert held == [(True,)]
        wait_for(lambda: jobs_connections() == 1, timeout=10, what="the holding session gone")
        assert manage("audit_relay", env=job_env).returncode == 0
        taken = bulk_events()
        assert len(taken) == 1 and taken[0]["completed"] is False
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    events = [(e.changes["run"], e.changes["counts"]) for e in AuditEvent.objects.filter(action="bulk")]
    events.sort(key=lambda e: e[1]["batches"])
    # Every committed batch is still accounted for: the last event of the run has them all.
    assert len(events) == 2 and events[0][0] == events[1][0]
    assert events[1][1] == {
        "rows": total,
        "created": total,
        "updated": 0,
        "unchanged": 0,
        "batches": total // batch,
        "completed": True,
    }
    assert outbox_rows() == 0


def test_a_second_run_is_refused_while_one_holds_the_lock(tmp_path, job_env):
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(100_000)))
    other = write_csv(tmp_path / "other.csv", [("OTHER-1", "Other", 1, 1)])
    first = start_import(path, job_env, "--batch-size", "1000")
    wait_for(lambda: first.poll() is not None or import_lock_holders() == 1, timeout=60, what="the lock taken")
    assert first.poll() is None
    os.kill(first.pid, signal.SIGSTOP)  # keep it holding the lock while the second one tries
    try:
        second = run_import(other, job_env)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=120)

    assert second.returncode != 0
    assert "import_products is already running" in second.stderr
    assert first.returncode == 0, err
    assert product_count() == 100_000
    assert "OTHER-1" not in products()


def test_sigterm_stops_the_job_and_leaves_no_connection(tmp_path, job_env):
    total, batch = 200_000, 1000
    path = write_csv(tmp_path / "big.csv", (product_row(i) for i in range(total)))
    proc = start_import(path, job_env, "--batch-size", str(batch))
    wait_for(lambda: proc.poll() is not None or product_count() > 0, timeout=120, what="a first batch committed")
    assert proc.poll() is None, "the import finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "run it again to finish" in err
    committed = product_count()
    assert 0 < committed < total and committed % batch == 0
    wait_for(lambda: jobs_connections() == 0, timeout=10, what="no jobs:market connection left")
    assert import_lock_holders() == 0
    # The stopped run still leaves its one event, saying it did not complete.
    counts = bulk_events()[-1]
    assert counts["completed"] is False and counts["created"] == committed


def test_through_a_transaction_pooler_the_lock_needs_the_direct_url(tmp_path, job_env):
    from tests.support.pgbouncer import PgBouncer

    path = write_csv(tmp_path / "p.csv", (product_row(i) for i in range(10_000)))
    sd = connections["market"].settings_dict
    with PgBouncer(upstream_host=sd["HOST"], upstream_port=int(sd["PORT"] or 5432), pool_size=2).running() as bouncer:
        env = {**job_env, "MARKET_DATABASE_URL": bouncer.url(sd["NAME"]), "MARKET_DATABASE_POOLER": "transaction"}
        refused = run_import(path, env)
        assert refused.returncode != 0
        assert "set MARKET_DATABASE_DIRECT_URL" in refused.stderr
        assert product_count() == 0

        env["MARKET_DATABASE_DIRECT_URL"] = job_env["MARKET_DATABASE_URL"]
        first = run_import(path, env, "--batch-size", "2000", "-v", "2")
        again = run_import(path, env, "--batch-size", "2000")

    assert first.returncode == 0, first.stderr
    assert "10,000 created" in first.stdout
    # A pooler's server session is shared: the job does not renice it (config/multidb/backend/priority.py).
    assert "database backend priority left as it is: behind a transaction pooler" in first.stderr
    assert "lowered the CPU priority of its database backend" not in first.stderr
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 updated, 10,000 unchanged" in again.stdout
    assert product_count() == distinct_skus() == 10_000


@pytest.mark.parametrize("rows_cols", [(40, 120), (0, 0)], ids=["sized", "unsized"])
def test_progress_is_a_bar_on_a_terminal(tmp_path, job_env, rows_cols):
    path = write_csv(tmp_path / "t.csv", (product_row(i) for i in range(20_000)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *rows_cols, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "import_products", str(path)],
        cwd=ROOT,
        env=job_env,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError as exc:  # EIO: the last writer closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    screen = b"".join(chunks).decode(errors="replace")

    assert proc.returncode == 0, screen
    assert "20,000 created" in out
    assert "importing: 100%|" in screen and "20000/20000" in screen and "rows/s]" in screen
    assert "importing: 20,000/20,000 rows" not in screen  # no plain lines on a terminal
