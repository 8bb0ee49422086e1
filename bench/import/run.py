#!/usr/bin/env python3
"""`make bench-import`: `import_products` against PostgreSQL's own COPY, in one run.

On fresh bench databases (bench_import_shared/_blog/_market on the configured
servers, migrated), with a generated CSV of BENCH_IMPORT_ROWS rows (1,000,000):

  1. throughput, BENCH_IMPORT_ROUNDS rounds (3), order alternated per round:
       copy     psql `\\copy market_product(sku,name,price_cents,stock) FROM file CSV HEADER`
                into the empty table (no validation, no upsert, nothing else)
       import   `manage.py import_products file` into the empty table
     then, once, `import` again over the full table (every row unchanged) and
     `import` of a tenth of the file (peak memory against file size).
     Both sides are whole commands timed from start to exit. Peak RSS is the
     kernel's ru_maxrss of the child (os.wait4), so no extra dependency.
  2. web latency: gunicorn (config/gunicorn.conf.py, production settings, web
     pools opened up front) answers a blog read, GET /api/blog/posts/<slug>
     (the blog and shared databases, on the same server as the market), at a
     fixed rate (BENCH_IMPORT_RPS, 100/s), and a market read, GET
     /api/market/products/<sku>, at BENCH_IMPORT_MARKET_RPS (20/s) beside it;
     latency counted from the scheduled send time, so a stall is not hidden.
     BENCH_IMPORT_WEB_ROUNDS rounds (5), each: BENCH_IMPORT_WEB_S seconds (15)
     without a load, then for as long as a plain psql `\\copy` of the file
     runs, then for as long as a fresh `import_products` of the file runs.
     p50/p99 per endpoint and per round, and over all rounds' samples; non-2xx
     answers; the pools'
     `platform_db_pool_queued`/`timeouts` counters from /metrics; and the
     import's requests split by its phase (start-up, validation, writing),
     from its `-v 2` phase lines. The job and psql run in their own session,
     as a cron job or an ssh session would, not in the load generator's.

Writes bench/results/import-<date>.json and, for full runs (or with
BENCH_WRITE_DOCS=true), the results section of docs/import.md. Not part of
`make test`. Every process started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from config.multidb.conf.env import read_dotenv  # noqa: E402

VAR = ROOT / "var" / "bench" / "import"
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "import.md"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
GUNICORN = str(Path(PYTHON).parent / "gunicorn")
DBNAMES = {"SHARED": "bench_import_shared", "BLOG": "bench_import_blog", "MARKET": "bench_import_market"}
WEB_SKUS = 100  # products the web load reads; they are not in the file
WEB_POSTS = 100  # published blog posts the web load reads


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        sys.exit(f"[bench-import] {name} must be an integer")


ROWS = env_int("BENCH_IMPORT_ROWS", 1_000_000)
ROUNDS = env_int("BENCH_IMPORT_ROUNDS", 3)
RPS = env_int("BENCH_IMPORT_RPS", 100)  # blog reads a second
MARKET_RPS = env_int("BENCH_IMPORT_MARKET_RPS", 20)  # market reads a second, beside them
WEB_S = env_int("BENCH_IMPORT_WEB_S", 15)
WEB_ROUNDS = env_int("BENCH_IMPORT_WEB_ROUNDS", 5)  # a p99 needs samples: ~700 blog reads per import
IMPORT_ARGS = (os.environ.get("BENCH_IMPORT_ARGS") or "").split()  # extra import_products options, e.g. --nice 0
PARTS = set((os.environ.get("BENCH_IMPORT_PARTS") or "throughput,web").split(","))
FULL_RUN = ROWS >= 1_000_000 and ROUNDS >= 3 and WEB_ROUNDS >= 3 and PARTS >= {"throughput", "web"} and not IMPORT_ARGS


def say(msg: str) -> None:
    print(f"[bench-import] {msg}", flush=True)


# --------------------------------------------------------------------------- setup


def dotenv() -> dict[str, str]:
    """The configuration as the project reads it: the environment, .env, var/local.env."""
    read_dotenv()
    return dict(os.environ)


def bench_urls() -> dict[str, str]:
    found = dotenv()
    urls = {}
    for prefix, name in DBNAMES.items():
        url = os.environ.get(f"{prefix}_DATABASE_URL") or found.get(f"{prefix}_DATABASE_URL")
        if not url:
            sys.exit(f"[bench-import] {prefix}_DATABASE_URL is not set (run `make db` first)")
        urls[prefix] = urlunparse(urlparse(url)._replace(path="/" + name))
    return urls


def project_env(urls: dict[str, str], **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if "_DATABASE_" not in k and k not in ("APP_ROLE", "DJANGO_SETTINGS_MODULE")
    }
    for key, value in dotenv().items():  # the secret key and the like; the bench URLs replace the URLs
        if "_DATABASE_" not in key:
            env.setdefault(key, value)
    env.update({f"{p}_DATABASE_URL": u for p, u in urls.items()})
    env.update(DJANGO_DEBUG="false", PYTHONUNBUFFERED="1", **extra)
    return env


def libpq_env(url: str) -> dict[str, str]:
    """PG* variables for psql: the password never appears on a command line."""
    u = urlparse(url)
    out = {
        "PGHOST": u.hostname or "",
        "PGPORT": str(u.port or 5432),
        "PGDATABASE": u.path.lstrip("/"),
        "PGUSER": unquote(u.username or ""),
    }
    if u.password:
        out["PGPASSWORD"] = unquote(u.password)
    return {k: v for k, v in out.items() if v}


def connect(url: str, dbname: str | None = None) -> psycopg.Connection:
    if dbname:
        url = urlunparse(urlparse(url)._replace(path="/" + dbname))
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="bench:import")


def fresh_databases(urls: dict[str, str], env: dict[str, str]) -> None:
    for prefix, url in urls.items():
        with connect(url, "postgres") as conn:
            name = DBNAMES[prefix]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    out = subprocess.run([PYTHON, "manage.py", "migrate_all"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"[bench-import] migrate_all failed:\n{out.stdout}\n{out.stderr}")


def make_csv(path: Path, rows: int) -> None:
    marker = path.with_suffix(".rows")
    if path.exists() and marker.exists() and marker.read_text().strip() == str(rows):
        return
    say(f"writing {rows:,} rows to {path.relative_to(ROOT)}")
    rnd = random.Random(42)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sku", "name", "price_cents", "stock"])
        for i in range(rows):
            name = f'Product {i}, "deluxe" edition' if i % 10 == 0 else f"Product number {i}"
            w.writerow([f"SKU-{i:08d}", name, rnd.randint(0, 10**7), rnd.randint(0, 10_000)])
    marker.write_text(str(rows))


def head_csv(src: Path, dst: Path, rows: int) -> None:
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i > rows:
                break
            fout.write(line)


# --------------------------------------------------------------------------- measured commands


def timed(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    *,
    own_session: bool = False,
    stamps: list[tuple[float, str]] | None = None,
) -> dict:
    """Run `cmd` to completion: wall seconds, exit code and the child's peak RSS (ru_maxrss).

    `own_session`: the child gets a session of its own (as a cron job or an ssh
    login would), so the scheduler does not group it with this load generator.
    `stamps`: each output line is appended as (perf_counter when read, line).
    """
    with log.open("w") as fh:
        start = time.perf_counter()
        if stamps is not None:
            stamps.append((start, "<spawn>"))
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=fh if stamps is None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=own_session,
            text=stamps is not None,
        )
        if stamps is not None:
            for line in proc.stdout:
                stamps.append((time.perf_counter(), line.rstrip("\n")))
                fh.write(line)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"[bench-import] {' '.join(cmd[:3])}... exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
    return {
        "seconds": round(wall, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def truncate(market_url: str, *, web_products: bool = False) -> None:
    with connect(market_url) as conn:
        conn.execute("TRUNCATE market_product RESTART IDENTITY CASCADE")
        if web_products:
            conn.execute(
                "INSERT INTO market_product (sku, name, price_cents, stock) "
                "SELECT 'WEB-' || lpad(i::text, 4, '0'), 'Web product ' || i, 100 + i, 10 "
                f"FROM generate_series(1, {WEB_SKUS}) i"
            )
        try:
            conn.execute("CHECKPOINT")  # both sides start without a pending checkpoint's writes
        except psycopg.Error:
            pass
        conn.execute("VACUUM ANALYZE market_product")


def seed_blog(urls: dict[str, str]) -> list[str]:
    """One author in the shared database and WEB_POSTS published posts; their slugs."""
    with connect(urls["SHARED"]) as conn:
        author = conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) VALUES ('!', false, 'bench-author', '', '', 'author@example.com', false, true, "
            "now()) ON CONFLICT (username) DO UPDATE SET is_active = true RETURNING id"
        ).fetchone()[0]
    body = " ".join(["A paragraph of a blog post, long enough to look like one."] * 30)
    with connect(urls["BLOG"]) as conn:
        conn.execute("DELETE FROM blog_post")
        conn.execute(
            "INSERT INTO blog_post (title, slug, body, status, author_id, published_at, created_at, updated_at) "
            "SELECT 'Bench post ' || i, 'bench-post-' || i, %s, 'published', %s, now() - i * interval '1 hour', "
            f"now(), now() FROM generate_series(1, {WEB_POSTS}) i",
            (body, author),
        )
        conn.execute("VACUUM ANALYZE blog_post")
    return [f"bench-post-{i}" for i in range(1, WEB_POSTS + 1)]


def count_products(market_url: str) -> int:
    with connect(market_url) as conn:
        return conn.execute("SELECT count(*) FROM market_product").fetchone()[0]


def run_copy(csv_path: Path, urls: dict[str, str]) -> dict:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    cmd = [
        psql,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        f"\\copy market_product (sku, name, price_cents, stock) FROM '{csv_path}' WITH (FORMAT csv, HEADER true)",
    ]
    env = {**os.environ, **libpq_env(urls["MARKET"])}
    return timed(cmd, env, VAR / "copy.log", own_session=True)


# The floor: the least any CPU use can cost the web here. One process that only spins, at the
# lowest priority there is (SCHED_IDLE: a process that wakes takes the CPU from it at once),
# in a session of its own: no memory traffic, no I/O, no lock, no database.
BUSY_LOOP = (
    "import os, sys, time\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)
BUSY_S = 8  # about as long as an import of the full file runs under the web load


def run_busy_loop(seconds: float) -> None:
    subprocess.run(
        [sys.executable, "-c", BUSY_LOOP, str(seconds)], check=True, start_new_session=True, stdin=subprocess.DEVNULL
    )


def run_import(csv_path: Path, env: dict[str, str], tag: str, *, stamps: list[tuple[float, str]] | None = None) -> dict:
    log = VAR / f"import-{tag}.log"
    cmd = [PYTHON, "manage.py", "import_products", str(csv_path), "--progress", "lines", *IMPORT_ARGS]
    if stamps is not None:
        cmd += ["-v", "2"]  # its phase lines (and what it did about priorities), timestamped as they come
    out = timed(cmd, env, log, own_session=True, stamps=stamps)
    summary = next((line for line in log.read_text().splitlines() if line.startswith("imported ")), "")
    m = re.search(
        r"([\d,]+) created, ([\d,]+) updated, ([\d,]+) unchanged.*validation ([\d.]+)s, writing ([\d.]+)s", summary
    )
    if m:
        out.update(
            created=int(m[1].replace(",", "")),
            updated=int(m[2].replace(",", "")),
            unchanged=int(m[3].replace(",", "")),
            validate_s=float(m[4]),
            write_s=float(m[5]),
        )
    return out


# --------------------------------------------------------------------------- web load


def kinds_schedule(blog_rps: int, market_rps: int) -> list[str]:
    """The endpoint of each scheduled request, market reads spread evenly among blog reads."""
    total = blog_rps + market_rps
    return ["market" if ((k + 1) * market_rps) // total > (k * market_rps) // total else "blog" for k in range(total)]


class FixedRateLoad:
    """GET at a fixed total rate over keep-alive connections; latency from the scheduled time.

    Request k goes to endpoint `schedule[k % len(schedule)]`, cycling through
    that endpoint's `paths`.
    """

    def __init__(self, port: int, paths: dict[str, list[str]], schedule: list[str], workers: int = 8):
        self.port, self.paths, self.schedule, self.workers = port, paths, schedule, workers
        self.rps = len(schedule)
        self.stop_at = self.started = 0.0
        # (due s from the start, latency ms, status, endpoint, ms the client itself was late sending it)
        self.timeline: list[tuple[float, float, int, str, float]] = []
        self.lock = threading.Lock()

    def measure(self, seconds: float | None = None, *, while_alive: threading.Thread | None = None) -> dict:
        """For `seconds`, or for as long as `while_alive` runs; a summary per endpoint."""
        self.timeline = []
        start = self.started = time.perf_counter()
        self.stop_at = start + (seconds if seconds is not None else 3600)
        if while_alive is not None:

            def watch():
                while_alive.join()
                self.stop_at = time.perf_counter()

            threading.Thread(target=watch, daemon=True).start()
        threads = [threading.Thread(target=self._worker, args=(i, start), daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        return {
            kind: summarize([(lat, st) for _d, lat, st, k, _late in self.timeline if k == kind], elapsed)
            for kind in self.paths
        }

    def _worker(self, index: int, start: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while True:
            k = index + n * self.workers  # the k-th request of the schedule
            due = start + k / self.rps
            if due >= self.stop_at:
                break
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            kind = self.schedule[k % len(self.schedule)]
            paths = self.paths[kind]
            path = paths[(k // len(self.schedule)) % len(paths)]
            sent = time.perf_counter()  # later than `due` when this client itself waited for a CPU
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            latency = (time.perf_counter() - due) * 1000
            with self.lock:
                self.timeline.append(
                    (round(due - start, 4), round(latency, 2), status, kind, round((sent - due) * 1000, 2))
                )
            n += 1
        conn.close()


def pct(sorted_values: list[float], p: float) -> float:
    return round(sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))], 2)


def summarize(results: list[tuple[float, int]], seconds: float) -> dict:
    lat = sorted(r[0] for r in results)
    if not lat:
        return {"requests": 0}
    return {
        "requests": len(lat),
        "seconds": round(seconds, 2),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": round(lat[-1], 2),
        "non_2xx": sum(1 for _l, s in results if not 200 <= s < 300),
    }


POOL_ALIASES = ("default", "blog", "market")


def pool_counters(port: int) -> dict[str, float]:
    """`<alias>:queued` and `<alias>:timeouts` of the web pools, summed over the workers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for alias in POOL_ALIASES:
        for name in ("platform_db_pool_queued_total", "platform_db_pool_timeouts_total"):
            values = [
                float(v) for v in re.findall(rf'^{name}\{{[^}}]*alias="{alias}"[^}}]*\}} ([0-9.e+-]+)$', text, re.M)
            ]
            out[f"{alias}:" + name.removeprefix("platform_db_pool_").removesuffix("_total")] = sum(values)
    return out


def pool_max(env: dict[str, str], prefix: str) -> str:
    return env.get(f"{prefix}_DATABASE_POOL_MAX_SIZE") or "8"  # config/multidb/conf/databases.py's default


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"[bench-import] gunicorn did not answer {path} within {deadline_s}s")


PHASES = ("start-up", "validation", "writing")
WEB_PHASES = ("alone", "during_busy_loop", "during_copy", "during_import")


def import_phases(stamps: list[tuple[float, str]], load_start: float) -> list[tuple[str, float, float]]:
    """(phase, from s, to s) relative to the load's start, from the job's `-v 2` phase lines."""
    spawn = next(t for t, line in stamps if line == "<spawn>")
    validate = next((t for t, line in stamps if line.startswith("phase validate")), None)
    write = next((t for t, line in stamps if line.startswith("phase import")), None)
    end = stamps[-1][0]
    if validate is None or write is None:
        return []
    return [
        (name, round(a - load_start, 3), round(b - load_start, 3))
        for name, a, b in (("start-up", spawn, validate), ("validation", validate, write), ("writing", write, end))
    ]


def by_phase(
    timeline: list[tuple[float, float, int, str, float]], phases: list[tuple[str, float, float]], kind: str
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in PHASES}
    for due, latency, _status, k, _late in timeline:
        if k != kind:
            continue
        for name, a, b in phases:
            if a <= due < b:
                out[name].append(latency)
                break
    return out


# --------------------------------------------------------------------------- main


def throughput(urls: dict[str, str], env: dict[str, str], big: Path, tenth: Path) -> dict:
    rounds = []
    for r in range(ROUNDS):
        pair = {}
        for side in ("copy", "import") if r % 2 == 0 else ("import", "copy"):
            truncate(urls["MARKET"])
            pair[side] = run_copy(big, urls) if side == "copy" else run_import(big, env, f"fresh-{r}")
            assert count_products(urls["MARKET"]) == ROWS, f"{side} did not load {ROWS} rows"
        pair["ratio"] = round(pair["copy"]["seconds"] / pair["import"]["seconds"], 3)
        rounds.append(pair)
        say(
            f"round {r + 1}: copy {pair['copy']['seconds']:.2f}s, import {pair['import']['seconds']:.2f}s "
            f"(import/copy rows/s = {pair['ratio']:.2f}), import peak RSS {pair['import']['peak_rss_mb']} MB"
        )
    rerun = run_import(big, env, "rerun")  # the table holds the whole file: every row unchanged
    assert rerun.get("unchanged") == ROWS, rerun
    truncate(urls["MARKET"])
    small = run_import(tenth, env, "tenth")
    say(
        f"rerun (all unchanged) {rerun['seconds']:.2f}s; a tenth of the file: peak RSS {small['peak_rss_mb']} MB "
        f"vs {rounds[-1]['import']['peak_rss_mb']} MB for all of it"
    )
    return {
        "rounds": rounds,
        "median_ratio": statistics.median(p["ratio"] for p in rounds),
        "copy_rows_per_s": round(ROWS / statistics.median(p["copy"]["seconds"] for p in rounds)),
        "import_rows_per_s": round(ROWS / statistics.median(p["import"]["seconds"] for p in rounds)),
        "rerun_unchanged": rerun,
        "tenth_of_file": small,
        "peak_rss_method": "os.wait4 ru_maxrss of the import_products process",
    }


def web_latency(urls: dict[str, str], env: dict[str, str], big: Path, procs: list[subprocess.Popen]) -> dict:
    truncate(urls["MARKET"], web_products=True)
    slugs = seed_blog(urls)
    port = free_port()
    # Web pools opened up front (min = max), so a request that waits for a connection
    # can only be one something else took, not a pool growing.
    web_env = {
        **env,
        "PORT": str(port),
        **{f"{p}_DATABASE_POOL_MIN_SIZE": pool_max(env, p) for p in ("SHARED", "BLOG", "MARKET")},
    }
    with (VAR / "gunicorn.log").open("w") as fh:
        procs.append(
            subprocess.Popen(
                [GUNICORN, "-c", "config/gunicorn.conf.py"],
                cwd=ROOT,
                env=web_env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    paths = {"blog": [f"/api/blog/posts/{slug}" for slug in slugs]}
    if MARKET_RPS > 0:
        paths["market"] = [f"/api/market/products/WEB-{i:04d}" for i in range(1, WEB_SKUS + 1)]
    for kind_paths in paths.values():
        wait_http(port, kind_paths[0])
    load = FixedRateLoad(port, paths, kinds_schedule(RPS, MARKET_RPS if "market" in paths else 0))
    load.measure(3)  # warm every worker and its pools
    web_rounds = []
    samples: dict[str, dict[str, list[float]]] = {
        "alone": {},
        "during_busy_loop": {},
        "during_copy": {},
        "during_import": {},
    }
    phase_samples: dict[str, list[float]] = {name: [] for name in PHASES}

    def keep(phase: str) -> None:
        for kind in paths:
            samples[phase].setdefault(kind, []).extend(lat for _d, lat, _s, k, _l in load.timeline if k == kind)

    for r in range(WEB_ROUNDS):
        if r:
            truncate(urls["MARKET"], web_products=True)
        counters = pool_counters(port)
        alone = load.measure(WEB_S)
        alone["pool"] = delta(pool_counters(port), counters)
        keep("alone")
        alone_timeline = load.timeline
        # The same load beside a lowest-priority busy loop on one core: the machine's floor.
        spinner = threading.Thread(target=lambda: run_busy_loop(BUSY_S))
        spinner.start()
        during_busy = load.measure(while_alive=spinner)
        spinner.join()
        keep("during_busy_loop")
        # The same load during a plain COPY of the file: what any bulk load costs the web here.
        copier = threading.Thread(target=lambda: run_copy(big, urls))
        copier.start()
        during_copy = load.measure(while_alive=copier)
        copier.join()
        keep("during_copy")
        copy_timeline = load.timeline
        truncate(urls["MARKET"], web_products=True)
        counters = pool_counters(port)
        with_import: dict = {}
        stamps: list[tuple[float, str]] = []
        importer = threading.Thread(
            target=lambda: with_import.update(run_import(big, env, f"under-web-load-{r}", stamps=stamps))
        )
        importer.start()
        during = load.measure(while_alive=importer)
        importer.join()
        keep("during_import")
        during["pool"] = delta(pool_counters(port), counters)
        during["import_s"] = with_import.get("seconds")
        phases = import_phases(stamps, load.started)
        split = by_phase(load.timeline, phases, "blog")
        for name, values in split.items():
            phase_samples[name].extend(values)
        during["blog_by_phase"] = {
            name: {"requests": len(v), "p99_ms": pct(sorted(v), 99) if v else None, "seconds": round(b - a, 2)}
            for (name, a, b), v in ((p, split[p[0]]) for p in phases)
        }
        during["priority_log"] = [line for _t, line in stamps if "nice" in line]
        (VAR / f"web-timeline-{r}.json").write_text(
            json.dumps({"phases": phases, "timeline": load.timeline, "alone": alone_timeline, "copy": copy_timeline})
        )
        ratio = round(during["blog"]["p99_ms"] / alone["blog"]["p99_ms"], 2)
        copy_ratio = round(during_copy["blog"]["p99_ms"] / alone["blog"]["p99_ms"], 2)
        busy_ratio = round(during_busy["blog"]["p99_ms"] / alone["blog"]["p99_ms"], 2)
        web_rounds.append(
            {
                "alone": alone,
                "during_busy_loop": during_busy,
                "during_copy": during_copy,
                "during_import": during,
                "p99_ratio": ratio,
                "copy_p99_ratio": copy_ratio,
                "busy_loop_p99_ratio": busy_ratio,
            }
        )
        phase_text = ", ".join(
            f"{name} {v['p99_ms']} ms ({v['requests']})" for name, v in during["blog_by_phase"].items()
        )
        say(
            f"web round {r + 1}: blog alone p50 {alone['blog']['p50_ms']} ms, p99 {alone['blog']['p99_ms']} ms "
            f"({alone['blog']['requests']} requests); beside a busy loop p99 {during_busy['blog']['p99_ms']} ms "
            f"(x{busy_ratio}); during \\copy p99 {during_copy['blog']['p99_ms']} ms "
            f"(x{copy_ratio}); during the import ({during['import_s']}s) p50 {during['blog']['p50_ms']} ms, "
            f"p99 {during['blog']['p99_ms']} ms (x{ratio}; {during['blog']['requests']} requests; by phase: "
            f"{phase_text}); non-2xx {sum(alone[k]['non_2xx'] + during[k]['non_2xx'] for k in paths)}; "
            f"waited for a connection {sum(v for k, v in during['pool'].items() if k.endswith(':queued')):.0f}"
        )
        if "market" in paths:
            say(
                f"  market alone p99 {alone['market']['p99_ms']} ms, during \\copy {during_copy['market']['p99_ms']} "
                f"ms, during the import {during['market']['p99_ms']} ms"
            )

    def pooled(phase: str, kind: str) -> dict:
        values = sorted(samples[phase].get(kind, []))
        return {"requests": len(values), "p50_ms": pct(values, 50), "p99_ms": pct(values, 99)} if values else {}

    out = {
        "rps": RPS,
        "market_rps": MARKET_RPS if "market" in paths else 0,
        "endpoint": "GET /api/blog/posts/<slug>",
        "secondary_endpoint": "GET /api/market/products/<sku>",
        "rounds": web_rounds,
        "web_s": WEB_S,
        "busy_loop_s": BUSY_S,
        "median_p99_alone_ms": statistics.median(w["alone"]["blog"]["p99_ms"] for w in web_rounds),
        "median_p99_during_ms": statistics.median(w["during_import"]["blog"]["p99_ms"] for w in web_rounds),
        "median_p99_ratio": statistics.median(w["p99_ratio"] for w in web_rounds),
        "median_p99_during_copy_ms": statistics.median(w["during_copy"]["blog"]["p99_ms"] for w in web_rounds),
        "median_copy_p99_ratio": statistics.median(w["copy_p99_ratio"] for w in web_rounds),
        "non_2xx": sum(w[ph][k]["non_2xx"] for w in web_rounds for ph in WEB_PHASES for k in paths),
        "requests": sum(w[ph][k]["requests"] for w in web_rounds for ph in WEB_PHASES for k in paths),
        "waited_for_connection_during_import": sum(
            v for w in web_rounds for k, v in w["during_import"]["pool"].items() if k.endswith(":queued")
        ),
        "pool_timeouts_during_import": sum(
            v for w in web_rounds for k, v in w["during_import"]["pool"].items() if k.endswith(":timeouts")
        ),
    }
    # Every round's samples of a phase together: the p99 of a few thousand requests, not of a few hundred.
    out["pooled"] = {kind: {phase: pooled(phase, kind) for phase in samples} for kind in paths}
    blog = out["pooled"]["blog"]
    out["pooled_p99_ratio"] = round(blog["during_import"]["p99_ms"] / blog["alone"]["p99_ms"], 2)
    out["pooled_copy_p99_ratio"] = round(blog["during_copy"]["p99_ms"] / blog["alone"]["p99_ms"], 2)
    out["pooled_busy_loop_p99_ratio"] = round(blog["during_busy_loop"]["p99_ms"] / blog["alone"]["p99_ms"], 2)
    out["pooled_by_phase"] = {
        name: {
            "requests": len(v),
            "p99_ms": pct(sorted(v), 99) if v else None,
            "p99_ratio": round(pct(sorted(v), 99) / blog["alone"]["p99_ms"], 2) if v else None,
        }
        for name, v in phase_samples.items()
    }
    if "market" in paths:
        market = out["pooled"]["market"]
        out["market_pooled_p99_ratio"] = round(market["during_import"]["p99_ms"] / market["alone"]["p99_ms"], 2)
    return out


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    urls = bench_urls()
    env = project_env(urls)
    procs: list[subprocess.Popen] = []

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    result: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": ROWS}
    try:
        say("fresh databases " + ", ".join(DBNAMES.values()))
        fresh_databases(urls, env)
        big = VAR / f"products-{ROWS}.csv"
        make_csv(big, ROWS)
        tenth = VAR / f"products-{ROWS // 10}.csv"
        head_csv(big, tenth, ROWS // 10)
        if "throughput" in PARTS:
            result.update(throughput(urls, env, big, tenth))
        if "web" in PARTS:
            result["web"] = web_latency(urls, env, big, procs)
        result["machine"] = machine(urls)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    out = RESULTS / f"import-{stamp}{'' if FULL_RUN else '-smoke'}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if "median_ratio" in result:
        say(f"median import/copy throughput {result['median_ratio']:.2f} (target >= 0.5)")
    if "web" in result:
        w = result["web"]
        say(
            f"blog p99 during the imports x{w['pooled_p99_ratio']} over every round's requests (target <= 1.5; "
            f"median of the rounds x{w['median_p99_ratio']}), during \\copy x{w['pooled_copy_p99_ratio']}, beside a "
            f"lowest-priority busy loop x{w['pooled_busy_loop_p99_ratio']}; by phase "
            + ", ".join(f"{n} x{v['p99_ratio']}" for n, v in w["pooled_by_phase"].items())
        )
    say(f"results in {out.relative_to(ROOT)}")
    if FULL_RUN or (
        PARTS >= {"throughput", "web"} and os.environ.get("BENCH_WRITE_DOCS", "").lower() in ("1", "true", "yes")
    ):
        write_doc(result, out)
    return 0


def machine(urls: dict[str, str]) -> dict:
    with connect(urls["MARKET"]) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "postgresql": server,
        "python": sys.version.split()[0],
    }


def write_doc(r: dict, json_path: Path) -> None:
    w = r["web"]
    lines = [
        f"Measured {r['date']} on {r['machine']['cpus']} CPUs, PostgreSQL {r['machine']['postgresql']} on the same "
        f"machine, {r['rows']:,} rows, {len(r['rounds'])} rounds (`{json_path.relative_to(ROOT)}`).",
        "",
        "| round | psql `\\copy` | `import_products` | import/copy rows/s | import peak RSS |",
        "|---|---|---|---|---|",
        *(
            f"| {i + 1} | {p['copy']['seconds']:.2f} s | {p['import']['seconds']:.2f} s "
            f"(validation {p['import'].get('validate_s', '?')} s, writing {p['import'].get('write_s', '?')} s) | "
            f"{p['ratio']:.2f} | {p['import']['peak_rss_mb']} MB |"
            for i, p in enumerate(r["rounds"])
        ),
        "",
        f"- **Median throughput: {r['import_rows_per_s']:,} rows/s against COPY's {r['copy_rows_per_s']:,} rows/s, "
        f"ratio {r['median_ratio']:.2f}** (target >= 0.5).",
        f"- Rerun over the full table (every row unchanged): {r['rerun_unchanged']['seconds']:.2f} s.",
        f"- Peak RSS: {r['tenth_of_file']['peak_rss_mb']} MB for a tenth of the file, "
        f"{r['rounds'][-1]['import']['peak_rss_mb']} MB for all of it (flat: the file is streamed).",
        "",
        f"Web: `{w['endpoint']}` at a fixed {w['rps']} requests/s"
        + (f" with `{w['secondary_endpoint']}` at {w['market_rps']}/s beside it" if w.get("market_rps") else "")
        + f" (gunicorn, production settings; latency from the scheduled send time); per round {w['web_s']} s "
        f"without a load, then {w.get('busy_loop_s', BUSY_S)} s beside a process that only spins at the lowest "
        "CPU priority (SCHED_IDLE), then during a plain `\\copy` of the file, then during a fresh import of it.",
        "",
        "| round | blog p99 alone | beside a busy loop | during `\\copy` | during the import | ratio | import by "
        "phase: start-up, validation, writing | market p99 alone / during the import |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {i + 1} | {x['alone']['blog']['p99_ms']} ms ({x['alone']['blog']['requests']}) | "
            f"{x['during_busy_loop']['blog']['p99_ms']} ms (x{x['busy_loop_p99_ratio']}) | "
            f"{x['during_copy']['blog']['p99_ms']} ms (x{x['copy_p99_ratio']}) | "
            f"{x['during_import']['blog']['p99_ms']} ms ({x['during_import']['blog']['requests']}) | "
            f"x{x['p99_ratio']} | "
            + ", ".join(f"{v['p99_ms']} ms" for v in x["during_import"].get("blog_by_phase", {}).values())
            + " | "
            + (
                f"{x['alone']['market']['p99_ms']} / {x['during_import']['market']['p99_ms']} ms"
                if "market" in x["alone"]
                else "-"
            )
            + " |"
            for i, x in enumerate(w["rounds"])
        ),
        "",
        f"- **Blog p99, every round's requests together: {w['pooled']['blog']['alone']['p99_ms']} ms alone "
        f"({w['pooled']['blog']['alone']['requests']} requests), {w['pooled']['blog']['during_import']['p99_ms']} ms "
        f"during the imports ({w['pooled']['blog']['during_import']['requests']}): x{w['pooled_p99_ratio']}** "
        f"(target <= 1.5; median of the rounds' ratios x{w['median_p99_ratio']}); during the plain `\\copy`s "
        f"{w['pooled']['blog']['during_copy']['p99_ms']} ms (x{w['pooled_copy_p99_ratio']}); beside a "
        f"lowest-priority busy loop (the floor: no memory, no I/O, no database) "
        f"{w['pooled']['blog']['during_busy_loop']['p99_ms']} ms (x{w['pooled_busy_loop_p99_ratio']}).",
        "- By phase of the import (all rounds): "
        + ", ".join(f"{name} x{v['p99_ratio']} ({v['requests']} requests)" for name, v in w["pooled_by_phase"].items())
        + ".",
        *(
            [
                f"- Market read, every round together: p99 {w['pooled']['market']['alone']['p99_ms']} ms alone, "
                f"{w['pooled']['market']['during_import']['p99_ms']} ms during the imports "
                f"(x{w['market_pooled_p99_ratio']}), {w['pooled']['market']['during_copy']['p99_ms']} ms during the "
                "`\\copy`s."
            ]
            if "market" in w["pooled"]
            else []
        ),
        f"- Non-2xx answers: {w['non_2xx']} of {w['requests']}; requests that waited for a connection (any web "
        f"pool) during the imports: {w['waited_for_connection_during_import']:.0f}; pool timeouts: "
        f"{w['pool_timeouts_during_import']:.0f}.",
    ]
    text = DOC.read_text() if DOC.exists() else ""
    start, end = "<!-- bench-import:start -->", "<!-- bench-import:end -->"
    block = f"{start}\n" + "\n".join(lines) + f"\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    DOC.write_text(text)
    say(f"wrote the results into {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
