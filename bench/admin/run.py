#!/usr/bin/env python3
"""`make bench-admin`: every admin page at 10k rows and at full size, in one run (issue 17).

Two sets of databases on the configured server, each migrated with this checkout's
`manage.py migrate_all` and filled with SQL (bench/admin/fill.py):

    small   <prefix>_small_{shared,blog,market}: 10,000 rows per domain table
    big     <prefix>_big_{shared,blog,market}: 1M products, 1M orders (1-3 lines each),
            1M accounts, 1M transfers, 1M posts, 10M audit events

(both: 3,000 users, 5 groups, 200 tags, API tokens, django-axes' logs). Then one gunicorn
per set (config/gunicorn.conf.py, production settings, WEB_CONCURRENCY=1), a superuser
logged in through the admin's login form, and the page list read from the admin site
itself (bench/admin/pages.py: every ModelAdmin's changelist, each filter choice, search,
date drill-down, deep page, sorts, change/history/delete/add pages, audit history link).
Each page: one warm-up load per set, then BENCH_ADMIN_LOADS (5) loads per set, the two
sets alternating; the median of the server's own time (the access log's duration_ms,
found by X-Request-ID; the client's wall time when the line is missing).

Targets: at full size each page answers 200 in under 300 ms and in at most 2x its time at
10k rows. Writes bench/results/admin-<date>.json (-smoke for scaled-down runs), and for
full runs (or BENCH_WRITE_DOCS=true) docs/admin-scale.md and docs/admin-scale.png; exits 1
listing the pages that miss.

Knobs: BENCH_ADMIN_SCALE (1.0; 0.01 is a smoke run of a few minutes) multiplies the big
set's domain tables; BENCH_ADMIN_REUSE=true keeps the filled databases after the run and
reuses them when their sizes, fill version and migrations match (else every run starts
from empty databases and drops them at the end); BENCH_ADMIN_LOADS (5);
BENCH_ADMIN_MAX_CHOICES (6 per filter); BENCH_ADMIN_WORKERS (1); BENCH_ADMIN_DB_PREFIX
(bench_admin); BENCH_ADMIN_ONLY (a substring: measure only the pages whose key has it).
Every process started here is stopped on exit, Ctrl-C included.

`bench/admin/run.py --report bench/results/admin-<date>.json` writes the docs again from a
saved run (the targets judged again), without measuring.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlparse

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import run as bench  # noqa: E402
from bench.admin import fill  # noqa: E402
from bench.admin.pages import SUPERUSER  # noqa: E402
from scripts import procfs  # noqa: E402

VAR = ROOT / "var" / "bench" / "admin"
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "admin-scale.md"
CHART = ROOT / "docs" / "admin-scale.png"
PYTHON = str(bench.VENV_BIN / "python")
SETS = ("small", "big")
SET_TITLES = {"small": "10k rows", "big": "full size"}
TARGET_MS = 300.0  # at full size, strictly under
MAX_GROWTH = 2.0  # full-size time / 10k time, at most
REQUEST_ID_PREFIX = "bench-admin-"
NO_ANSWER = 0  # the status of a request that got no answer (connection closed, worker killed, timeout)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        sys.exit(f"[bench-admin] {name} must be a number")


SCALE = env_float("BENCH_ADMIN_SCALE", 1.0)
LOADS = bench.env_int("BENCH_ADMIN_LOADS", 5 if SCALE >= 1.0 else 3)  # a smoke run: 3, to stay in minutes
WORKERS = bench.env_int("BENCH_ADMIN_WORKERS", 1)
REUSE = bench.env_bool("BENCH_ADMIN_REUSE", False)
ONLY = os.environ.get("BENCH_ADMIN_ONLY", "").strip()
DB_PREFIX = os.environ.get("BENCH_ADMIN_DB_PREFIX", "").strip() or "bench_admin"
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", DB_PREFIX):
    sys.exit("[bench-admin] BENCH_ADMIN_DB_PREFIX must be a lower-case SQL identifier (letters, digits, _)")
FULL_RUN = SCALE >= 1.0 and LOADS >= 5 and not ONLY


def say(msg: str) -> None:
    print(f"[bench-admin] {msg}", flush=True)


# --------------------------------------------------------------------------- judgment


def judge(small: dict | None, big: dict | None, target_ms: float = TARGET_MS, max_growth: float = MAX_GROWTH) -> dict:
    """The targets of one page: `small` and `big` are {"status": int, "ms": float} (None: not
    measured in that set). Full size must answer 200 in under `target_ms` and in at most
    `max_growth` times the page's 10k time; a page that cannot be compared is a miss too."""
    misses = []
    growth = None
    if small and big and small["status"] == 200 and big["status"] == 200 and small["ms"] > 0:
        growth = round(big["ms"] / small["ms"], 2)
    if big is None:
        misses.append("not measured at full size (no such page there)")
    elif big["status"] != 200:
        misses.append(f"{answered(big['status'])} at full size")
    elif big["ms"] >= target_ms:
        misses.append(f"{big['ms']:.0f} ms at full size (target: under {target_ms:.0f} ms)")
    if small is None:
        misses.append("not measured at 10k rows (nothing to compare with)")
    elif small["status"] != 200:
        misses.append(f"{answered(small['status'])} at 10k rows")
    if growth is not None and growth > max_growth:
        text = f"x{growth:.1f} its 10k time of {small['ms']:.1f} ms (target: at most x{max_growth:g})"
        if small.get("min_ms") and big.get("min_ms") and big["min_ms"] / small["min_ms"] <= max_growth:
            # Still a miss (the rule is the medians'), but say when the fastest loads disagree.
            text += f"; the fastest loads say x{big['min_ms'] / small['min_ms']:.1f}: noise?"
        misses.append(text)
    return {"ok": not misses, "growth": growth, "misses": misses}


def answered(status: int) -> str:
    return "got no answer" if status == NO_ANSWER else f"answered {status}"


def summary_of(samples: list[dict]) -> dict:
    """One set's loads of a page -> {"status", "ms", "timing"}: the first non-200 status if any
    (a page must answer every load), the median server time (client time when the server's
    line was missing for any load)."""
    statuses = [s["status"] for s in samples]
    status = next((s for s in statuses if s != 200), 200)
    server = [s["server_ms"] for s in samples]
    timing, values = (
        ("server", server) if all(v is not None for v in server) else ("client", [s["wall_ms"] for s in samples])
    )
    return {
        "status": status,
        "ms": round(statistics.median(values), 1),
        "min_ms": round(min(values), 1),
        "timing": timing,
    }


def merge(pages_by_set: dict[str, list[dict]]) -> list[dict]:
    """One row per page key, in the big set's order, then the keys only the small set has."""
    rows: dict[str, dict] = {}
    for kind in ("big", "small"):
        for p in pages_by_set.get(kind, []):
            row = rows.setdefault(
                p["key"], {k: p[k] for k in ("key", "model", "kind", "detail") if k in p} | {"urls": {}}
            )
            row["urls"][kind] = p["url"]
            if p.get("note"):
                row.setdefault("notes", {})[kind] = p["note"]
    return list(rows.values())


# --------------------------------------------------------------------------- databases


def set_names(kind: str) -> dict[str, str]:
    return {prefix: f"{DB_PREFIX}_{kind}_{prefix.lower()}" for prefix in bench.PREFIXES}


def set_urls(kind: str) -> dict[str, str]:
    urls = {}
    for prefix, name in set_names(kind).items():
        url = bench.configured(f"{prefix}_DATABASE_URL")
        if not url:
            sys.exit(f"[bench-admin] {prefix}_DATABASE_URL is not set (run `make db` first)")
        urls[prefix] = bench.with_db(url, name)
    return urls


def dbname(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def fingerprint(sizes: dict[str, int]) -> str:
    migrations = hashlib.sha256(json.dumps(bench.migration_files(ROOT), sort_keys=True).encode()).hexdigest()
    return json.dumps({"fill": fill.VERSION, "sizes": sizes, "migrations": migrations[:16]}, sort_keys=True)


def comment_of(url: str) -> str | None:
    try:
        with bench.server_conn(url) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname(url),)
            ).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


COMMENT_PREFIX = "bench-admin "


def reusable(urls: dict[str, str], mark: str) -> dict | None:
    """How the set was filled (from its databases' comments) when all of them carry `mark`, else None."""
    filled = None
    for url in urls.values():
        comment = comment_of(url) or ""
        if not comment.startswith(COMMENT_PREFIX):
            return None
        body = comment[len(COMMENT_PREFIX) :]
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        if isinstance(parsed, dict) and parsed.get("mark") == mark:
            filled = parsed.get("filled", {})
        elif body == mark:  # written by the first version: the mark alone
            filled = filled or {}
        else:
            return None
    return filled


def drop_databases(urls: dict[str, str]) -> None:
    for url in urls.values():
        with bench.server_conn(url) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname(url))))


def create_databases(urls: dict[str, str]) -> None:
    drop_databases(urls)
    for url in urls.values():
        with bench.server_conn(url) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname(url))))


_fillers: list[fill.Filler] = []


def fill_set(kind: str, urls: dict[str, str], sizes: dict[str, int]) -> dict:
    """shared in one thread, market then blog in the other (the machine has 2 cores)."""
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.monotonic()

    def job(prefix: str, fn) -> dict:
        filler = fill.Filler(urls[prefix], end, say, f"{kind}/{prefix.lower()}")
        _fillers.append(filler)
        try:
            fn(filler, sizes)
            return {f"{prefix.lower()}.{step}": seconds for step, seconds in filler.steps.items()}
        finally:
            filler.close()

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        shared = pool.submit(job, "SHARED", fill.fill_shared)
        domains = pool.submit(lambda: {**job("MARKET", fill.fill_market), **job("BLOG", fill.fill_blog)})
        steps = {**shared.result(), **domains.result()}
    except BaseException:
        cancel_fills()  # Ctrl-C or a failed statement: the other thread's statement stops now, not at its end
        raise
    finally:
        pool.shutdown(wait=True)
        _fillers.clear()
    return {"fill_s": round(time.monotonic() - started, 1), "steps_s": steps, "data_until": end.isoformat()}


def cancel_fills() -> None:
    fill.STOPPING.set()
    for filler in list(_fillers):
        try:
            filler.conn.cancel_safe()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass


def prepare_set(kind: str, urls: dict[str, str], env: dict[str, str]) -> dict:
    sizes = fill.sizes(kind, SCALE)
    mark = fingerprint(sizes)
    info: dict = {"databases": {p: dbname(u) for p, u in urls.items()}, "sizes": sizes}
    earlier = reusable(urls, mark) if REUSE else None
    if earlier is not None:
        say(f"{kind}: reusing the filled databases {', '.join(info['databases'].values())}")
        info.update(reused=True, earlier_fill=earlier)
    else:
        say(f"{kind}: fresh databases {', '.join(info['databases'].values())}, migrate_all")
        create_databases(urls)
        started = time.monotonic()
        bench.run_checked([PYTHON, "manage.py", "migrate_all"], env, "migrate_all")
        info["migrate_s"] = round(time.monotonic() - started, 1)
        say(f"{kind}: filling {', '.join(f'{k} {v:,}' for k, v in sizes.items())}")
        info.update(fill_set(kind, urls, sizes), reused=False)
        say(f"{kind}: filled in {info['fill_s']:.0f}s ({info['steps_s']})")
        filled = {k: info[k] for k in ("migrate_s", "fill_s", "steps_s", "data_until")}
        comment = COMMENT_PREFIX + json.dumps({"mark": mark, "filled": filled})
        for url in urls.values():  # last: a set interrupted before this is never reused
            with bench.server_conn(url) as conn:
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(dbname(url)), sql.Literal(comment))
                )
    info["disk_bytes"] = {}
    for prefix, url in urls.items():
        with bench.server_conn(url) as conn:
            info["disk_bytes"][prefix] = conn.execute("SELECT pg_database_size(%s)", (dbname(url),)).fetchone()[0]
    info["disk_total_bytes"] = sum(info["disk_bytes"].values())
    say(f"{kind}: {info['disk_total_bytes'] / 2**30:.2f} GiB on disk")
    return info


def recent_login_attempts(shared_url: str, sizes: dict[str, int]) -> None:
    """axes' attempts again, as of now: the login just deleted those older than its cool-off."""
    filler = fill.Filler(shared_url, dt.datetime.now(dt.UTC), say, "attempts")
    try:
        fill.fill_axes_attempts(filler, sizes)
        filler.execute("ANALYZE axes_accessattempt")
    finally:
        filler.close()


def builder_env(env: dict[str, str]) -> dict[str, str]:
    """The page-list builder runs each changelist once, whatever its time: no statement timeout."""
    return {**env, **{f"{p}_DATABASE_STATEMENT_TIMEOUT_MS": "0" for p in bench.PREFIXES}}


# --------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    status: int
    body: str
    wall_ms: float
    request_id: str
    location: str | None


class AdminClient:
    """A browser's part: one keep-alive connection, cookies, the login form's CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> Answer:
        request_id = REQUEST_ID_PREFIX + uuid.uuid4().hex
        sent = {"X-Request-ID": request_id, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):  # gunicorn closes a keep-alive connection now and then: reconnect once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=sent)
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                # A keep-alive connection the server closed, or a worker killed mid-request (WEB_TIMEOUT).
                self.close()
                if attempt == 2:
                    return Answer(NO_ANSWER, "", (time.perf_counter() - started) * 1000, request_id, None)
                continue
            wall_ms = (time.perf_counter() - started) * 1000
            break
        for header in resp.msg.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        if (resp.getheader("Connection") or "").lower() == "close":
            self.close()
        return Answer(resp.status, data.decode("utf-8", "replace"), wall_ms, request_id, resp.getheader("Location"))

    def login(self, username: str, password: str) -> None:
        form = self.request("GET", "/admin/login/?next=/admin/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
        if form.status != 200 or not token:
            raise RuntimeError(f"GET /admin/login/ answered {form.status} without a CSRF token")
        fields = {"csrfmiddlewaretoken": token[1], "username": username, "password": password, "next": "/admin/"}
        body = urlencode(fields)
        done = self.request(
            "POST", "/admin/login/?next=/admin/", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if done.status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"the admin login was refused ({done.status}); is {username} locked out by axes?")
        index = self.request("GET", "/admin/")
        if index.status != 200 or 'id="login-form"' in index.body:
            raise RuntimeError(f"logged in, but /admin/ answered {index.status}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class AccessLog:
    """The server's access lines (JSON, one per request) of the bench's requests, by request id."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0
        self.lines: dict[str, dict] = {}

    def read(self) -> None:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for raw in data[:end].splitlines():
            if REQUEST_ID_PREFIX.encode() not in raw:
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("logger") == "access" and "duration_ms" in line:
                self.lines[str(line.get("request_id"))] = line

    def wait_for(self, request_ids: list[str], timeout_s: float = 3.0) -> None:
        """Lines are written as the answer leaves; give the last ones a moment to reach the file."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.read()
            if all(r in self.lines for r in request_ids) or time.monotonic() > deadline:
                return
            time.sleep(0.05)


@dataclass
class Server:
    kind: str
    proc: bench.Proc
    client: AdminClient
    log: AccessLog


def start_server(kind: str, env: dict[str, str], procs: bench.Procs) -> Server:
    port = bench.free_port()
    server_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS), "LOG_FORMAT": "json"}
    gunicorn = [str(bench.VENV_BIN / "gunicorn"), "-c", "config/gunicorn.conf.py"]
    proc = procs.start(f"admin-{kind}", gunicorn, env=server_env)
    bench.wait_ready(proc, f"http://127.0.0.1:{port}/healthz", deadline_s=120)
    return Server(kind, proc, AdminClient(port), AccessLog(proc.log))


def load(server: Server, url: str) -> dict:
    answer = server.client.request("GET", url)
    if 'id="login-form"' in answer.body:
        raise RuntimeError(f"{server.kind}: {url} answered the login form: the session was lost")
    return {"status": answer.status, "wall_ms": round(answer.wall_ms, 2), "request_id": answer.request_id}


def measure(row: dict, servers: dict[str, Server]) -> None:
    """One warm-up load per set, then LOADS loads per set, alternating which set goes first."""
    kinds = [k for k in SETS if k in row["urls"]]
    for kind in kinds:
        if not servers[kind].proc.alive():
            raise RuntimeError(f"the {kind} set's gunicorn exited:\n{servers[kind].proc.tail()}")
    samples: dict[str, list[dict]] = {k: [] for k in kinds}
    warm = {k: load(servers[k], row["urls"][k]) for k in kinds}
    for r in range(LOADS):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            samples[kind].append(load(servers[kind], row["urls"][kind]))
    for kind in kinds:
        log = servers[kind].log
        log.wait_for([s["request_id"] for s in samples[kind]])
        for s in samples[kind]:
            line = log.lines.pop(s.pop("request_id"), None)
            s["server_ms"] = line["duration_ms"] if line else None
            if line and line.get("databases"):
                s["databases"] = line["databases"]
        log.lines.pop(warm[kind]["request_id"], None)
        row[kind] = summary_of(samples[kind]) | {"warmup_status": warm[kind]["status"], "loads": samples[kind]}
    row.update(judge(row.get("small"), row.get("big")))


def peak_rss_mb(proc: bench.Proc) -> float | None:
    peaks = []
    for fields in procfs.group_stats(proc.popen.pid):
        try:
            status = Path(f"/proc/{fields[0]}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if m:
            peaks.append(int(m[1]) / 1024)
    return round(max(peaks), 1) if peaks else None


# --------------------------------------------------------------------------- output


def fmt_ms(side: dict | None) -> str:
    if side is None:
        return "-"
    return f"{side['ms']:.1f}" + ("" if side["status"] == 200 else f" ({side['status']})")


def table_lines(rows: list[dict]) -> list[str]:
    width = min(90, max(len(r["key"]) for r in rows))
    out = [f"{'page':<{width}}  {'10k ms':>10}  {'full ms':>10}  {'growth':>7}  ok"]
    for r in rows:
        growth = f"x{r['growth']:.2f}" if r.get("growth") is not None else "-"
        out.append(
            f"{r['key'][:width]:<{width}}  {fmt_ms(r.get('small')):>10}  {fmt_ms(r.get('big')):>10}  {growth:>7}  "
            + ("yes" if r["ok"] else "NO: " + "; ".join(r["misses"]))
        )
    return out


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown(result: dict, chart_name: str | None) -> str:
    rows, sets = result["pages"], result["sets"]
    missed = [r for r in rows if not r["ok"]]
    big, small = sets["big"], sets["small"]
    lines = [
        "# Admin pages at scale",
        "",
        "Written by `make bench-admin` (bench/admin/run.py); do not edit by hand. Issue 17's targets: at full size "
        f"every admin page answers in under {TARGET_MS:.0f} ms and in at most {MAX_GROWTH:g}x its own time at 10k "
        "rows.",
        "",
        f"Measured {result['date']} on {result['machine']['cpus']} CPUs, PostgreSQL {result['machine']['postgresql']} "
        f"on the same machine, commit {result['machine'].get('git_commit', '?')} "
        f"(`{result['json']}`). One gunicorn per set (config/gunicorn.conf.py, production settings, "
        f"WEB_CONCURRENCY={WORKERS}), logged in as a superuser through the admin's login form. Each page: one "
        f"warm-up load per set, then {LOADS} loads per set, the sets alternating; the median of the server's own "
        "time (the access log's `duration_ms`, found by `X-Request-ID`).",
        "",
        *(
            [
                f"**The machine was busy** (load average {result['machine']['loadavg_start'][0]:.1f} at the start, "
                f"{result['machine']['loadavg_end'][0]:.1f} at the end, on {result['machine']['cpus']} CPUs): other "
                "work inflated these times; compare with a run on an idle machine.",
                "",
            ]
            if max(result["machine"]["loadavg_start"][0], result["machine"]["loadavg_end"][0])
            > 0.75 * result["machine"]["cpus"]
            else []
        ),
        "| set | rows | filled in | on disk |",
        "|---|---|---|---|",
    ]
    for kind in SETS:
        s = sets[kind]
        n = s["sizes"]
        rows_text = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in n.items())
        fill_info = s.get("earlier_fill") or {} if s.get("reused") else s
        filled = (
            f"{fill_info['fill_s']:.0f} s (+ migrate {fill_info.get('migrate_s', 0):.0f} s)"
            if "fill_s" in fill_info
            else "?"
        ) + (" in an earlier run (reused)" if s.get("reused") else "")
        lines.append(f"| {SET_TITLES[kind]} | {rows_text} | {filled} | {gib(s['disk_total_bytes'])} |")
    lines += [
        "",
        f"**{len(rows) - len(missed)} of {len(rows)} pages meet the targets; {len(missed)} miss.** "
        f"Full-size set: {gib(big['disk_total_bytes'])} on disk"
        + (f", filled in {big['fill_s'] / 60:.1f} min" if "fill_s" in big else "")
        + (
            f", filled in {big['earlier_fill']['fill_s'] / 60:.1f} min in an earlier run"
            if "fill_s" in (big.get("earlier_fill") or {})
            else ""
        )
        + f"; 10k set {gib(small['disk_total_bytes'])}. Peak RSS of a gunicorn worker: "
        + ", ".join(f"{SET_TITLES[k]} {result['peak_rss_mb'].get(k)} MB" for k in SETS)
        + ".",
        "",
    ]
    if chart_name:
        lines += [f"![admin pages, 10k rows and full size]({chart_name})", ""]
    lines += ["| page | 10k ms | full-size ms | growth | target met |", "|---|---|---|---|---|"]
    for r in rows:
        growth = f"x{r['growth']:.2f}" if r.get("growth") is not None else "-"
        met = "yes" if r["ok"] else "**no**: " + "; ".join(r["misses"])
        lines.append(
            f"| {r['key'].replace('|', '/')} | {fmt_ms(r.get('small'))} | {fmt_ms(r.get('big'))} | {growth} | {met} |"
        )
    lines += [
        "",
        "Pages: the admin index and each app's index, and for every registered ModelAdmin its changelist, each "
        f"list-filter choice (at most {result['settings']['max_choices']} per filter, spread from the first to the "
        "last), a search for a term of an existing row, the date drill-down (a year, a month), the last page its "
        "paginator allows, each sortable column, and the change, history, delete and add pages of an existing row, "
        "and its audit-history link; built from the admin site itself (bench/admin/pages.py), so a new admin, "
        "filter or column is measured without editing the bench. Rows: bench/admin/fill.py (deterministic, "
        "realistic distributions, dates over 24 months); URLs and per-load times are in the JSON file.",
        "",
    ]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        say("matplotlib is not installed (requirements-bench.txt): no chart")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["pages"]
    labels = [r["key"] for r in rows]
    small = [r["small"]["ms"] if r.get("small") else 0 for r in rows]
    big = [r["big"]["ms"] if r.get("big") else 0 for r in rows]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.17 * len(rows)))
    ax.barh([i - 0.2 for i in y], small, height=0.4, color="#9bb7d4", label="10k rows")
    ax.barh(
        [i + 0.2 for i in y],
        big,
        height=0.4,
        color=["#3a7d44" if r["ok"] else "#c0392b" for r in rows],
        label="full size (red: misses a target)",
    )
    ax.axvline(TARGET_MS, color="black", linestyle="--", linewidth=0.8, label=f"{TARGET_MS:.0f} ms")
    ax.set_xscale("log")
    ax.set_yticks(list(y), labels, fontsize=6)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first page on top, no margin
    ax.set_xlabel("server time, median of the loads (ms, log scale)")
    ax.set_title(f"Admin pages: 10k rows vs full size ({result['date'][:10]})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def busy() -> bool:
    """More runnable processes than three quarters of the CPUs: other work inflates every time measured."""
    return os.getloadavg()[0] > 0.75 * (os.cpu_count() or 1)


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_start": os.getloadavg()}
    try:
        with bench.server_conn(set_urls("small")["SHARED"]) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        info["postgresql"] = "?"
    head = bench.git(ROOT, "log", "-1", "--format=%h")
    if head.returncode == 0:
        dirty = bench.git(ROOT, "status", "--porcelain", "--untracked-files=no").stdout.strip()
        info["git_commit"] = head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    return info


def command_line() -> str:
    knobs = [f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_ADMIN_")]
    return " ".join(knobs + ["make bench-admin"])


# --------------------------------------------------------------------------- main


def main() -> int:
    started = time.monotonic()
    procs = bench.Procs()
    urls = {kind: set_urls(kind) for kind in SETS}
    servers: dict[str, Server] = {}
    finished = False

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        VAR.mkdir(parents=True, exist_ok=True)
        result: dict = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command_line(),
            "full_run": FULL_RUN,
            "machine": machine(),
            "settings": {
                "scale": SCALE,
                "loads": LOADS,
                "warmups": 1,
                "workers": WORKERS,
                "max_choices": int(os.environ.get("BENCH_ADMIN_MAX_CHOICES") or 6),
                "only": ONLY or None,
            },
            "targets": {"under_ms": TARGET_MS, "max_growth": MAX_GROWTH},
            "sets": {},
        }
        if SCALE < 1.0:
            say(f"BENCH_ADMIN_SCALE={SCALE}: the big set is scaled down; docs/ are left alone")
        if busy():
            say(
                f"the machine is busy (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): "
                "every time measured will be high"
            )
        envs = {kind: bench.project_env(urls[kind]) for kind in SETS}
        for kind in SETS:
            result["sets"][kind] = prepare_set(kind, urls[kind], envs[kind])

        password = secrets.token_urlsafe(24)  # this run's only; never printed
        pages_by_set: dict[str, list[dict]] = {}
        for kind in SETS:
            benv = builder_env(envs[kind]) | {"BENCH_ADMIN_PASSWORD": password}
            bench.run_checked([PYTHON, "-m", "bench.admin.pages", "superuser"], benv, f"{kind}: the superuser")
            servers[kind] = start_server(kind, envs[kind], procs)
            servers[kind].client.login(SUPERUSER, password)
            say(f"{kind}: gunicorn on :{servers[kind].client.port}, logged in as {SUPERUSER}")
            recent_login_attempts(urls[kind]["SHARED"], result["sets"][kind]["sizes"])
            built = time.monotonic()
            out = bench.run_checked([PYTHON, "-m", "bench.admin.pages", "pages"], benv, f"{kind}: the page list")
            pages_by_set[kind] = json.loads(out.strip().splitlines()[-1])
            say(f"{kind}: {len(pages_by_set[kind])} pages, listed in {time.monotonic() - built:.1f}s")
        rows = merge(pages_by_set)
        if ONLY:
            rows = [r for r in rows if ONLY in r["key"]]
        say(f"measuring {len(rows)} pages, {LOADS} loads per set after a warm-up")
        for i, row in enumerate(rows, 1):
            measure(row, servers)
            say(
                f"[{i}/{len(rows)}] {row['key']}: {fmt_ms(row.get('small'))} / {fmt_ms(row.get('big'))} ms"
                + ("" if row["ok"] else "  MISS: " + "; ".join(row["misses"]))
            )
        result["peak_rss_mb"] = {kind: peak_rss_mb(servers[kind].proc) for kind in SETS}
        result["pages"] = rows
        result["summary"] = {
            "pages": len(rows),
            "missed": sum(not r["ok"] for r in rows),
            "elapsed_s": round(time.monotonic() - started, 1),
        }
        result["machine"]["loadavg_end"] = os.getloadavg()

        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
        out_path = RESULTS / f"admin-{stamp}{'' if FULL_RUN else '-smoke'}.json"
        result["json"] = str(out_path.relative_to(ROOT))
        out_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print("\n".join(table_lines(rows)), flush=True)
        written = [out_path]
        if FULL_RUN or bench.env_bool("BENCH_WRITE_DOCS", False):
            has_chart = chart(result, CHART)
            DOC.write_text(markdown(result, CHART.name if has_chart else None))
            written += [DOC] + ([CHART] if has_chart else [])
        say("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in written))
        missed = [r for r in rows if not r["ok"]]
        elapsed = result["summary"]["elapsed_s"]
        say(f"{len(rows) - len(missed)} of {len(rows)} pages meet the targets; done in {elapsed:.0f}s")
        finished = True
        if missed:
            say(
                f"{len(missed)} pages miss (full size: under {TARGET_MS:.0f} ms, at most x{MAX_GROWTH:g} the 10k time):"
            )
            for r in missed:
                say(f"  {r['key']}: {'; '.join(r['misses'])}")
            return 1
        return 0
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        cancel_fills()
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        cancel_fills()
        for server in servers.values():
            server.client.close()  # a keep-alive connection would hold gunicorn's graceful stop
        procs.stop_all()
        if not REUSE:
            for kind in SETS:
                try:
                    drop_databases(urls[kind])
                except psycopg.Error as exc:
                    say(f"could not drop the {kind} databases: {exc}")
            say("dropped the bench databases (BENCH_ADMIN_REUSE=true keeps them for the next run)")
        elif not finished:
            say("kept the databases; an unfinished fill is refilled next time (no completion mark)")


def report_only(path: Path) -> int:
    """Rewrite docs/admin-scale.md and .png from a saved results file (the targets judged again)."""
    result = json.loads(path.read_text())
    for row in result["pages"]:
        row.update(judge(row.get("small"), row.get("big")))
    result["json"] = str(path.resolve().relative_to(ROOT))
    has_chart = chart(result, CHART)
    DOC.write_text(markdown(result, CHART.name if has_chart else None))
    print("\n".join(table_lines(result["pages"])), flush=True)
    say(f"wrote {DOC.relative_to(ROOT)}" + (f", {CHART.relative_to(ROOT)}" if has_chart else ""))
    return 0 if all(row["ok"] for row in result["pages"]) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"] and len(sys.argv) == 3:
        sys.exit(report_only(Path(sys.argv[2])))
    sys.exit(main())
