#!/usr/bin/env python3
"""Server CPU per request, in-process: config.wsgi's `application` called as gunicorn calls it.

    .venv/bin/python bench/cpu_per_request.py [--route ROUTE] [-n N] [--batches B]
                                              [--log PATH] [--profile cprofile|pyinstrument]

Run from a checkout's root: it measures that checkout (its sys.path, its `.env` databases,
which need migrating and a user; `manage.py seed_demo` is enough). ROUTE is one of

    get_user          GET /api/users/<id> (anonymous, as bench/load.lua), fast lane
    transfer          POST /api/market/transfers, fast lane (token, a new Idempotency-Key each time)
    get_user_django   the same GET with API_FAST_LANE=false: Django's request path
    transfer_django   the same POST with API_FAST_LANE=false
    product           GET /api/market/products/<sku> (Django only)

or, without --route, the first four, each in a fresh interpreter. The figure is
time.process_time() per request (user + system CPU of the whole process, the metrics and
audit relay threads included; a busy machine barely moves it where requests/second swing),
the median of B batches after a warm-up; thread_time (the calling thread only) beside it.

Production-like on purpose: DJANGO_DEBUG=false, APP_ROLE=web, prometheus_client in
multiprocess mode, the LOG_FORMAT of `.env` (json by default) and the settings' own LOGGING,
whose console handler writes to stderr; stderr is a real file here (var/bench/cpu-<route>.log,
or --log, e.g. /dev/null), unbuffered as under bench/run.py (PYTHONUNBUFFERED=1), and the
loaded modules are frozen for the collector as gunicorn.conf.py's post_worker_init does.
The transfers move 1 cent back and forth between two accounts of a user of their own, so
funds never run out and the balances end where they started.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path.cwd()
VAR = ROOT / "var" / "bench"
ROUTES = ("get_user", "transfer", "get_user_django", "transfer_django", "product")
DEFAULT_ROUTES = ROUTES[:4]
BENCH_USER = "cpubench"


def fail(message: str):
    """To stdout: stderr is the log file."""
    print(message, flush=True)
    sys.exit(1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--route", choices=ROUTES)
    parser.add_argument("-n", type=int, default=3000, help="requests measured (per route)")
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--log", help="where stderr (the log lines) goes; default var/bench/cpu-<route>.log")
    parser.add_argument("--profile", choices=("cprofile", "pyinstrument"))
    return parser.parse_args(argv)


def environ_for(method: str, path: str, body: bytes = b"", **headers: str) -> dict:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_ACCEPT": "*/*",
        "HTTP_USER_AGENT": "cpu_per_request",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    env.update(headers)
    return env


def driver(route: str):
    """A function sending one request of `route` through the application (imported here)."""
    import config.wsgi  # first: it sets Django up, as gunicorn's worker does

    application = config.wsgi.application
    from django.contrib.auth import get_user_model
    from django.db import connections

    from config.users.tokens import api_token_create
    from market import services
    from market.models import Account, Product

    expected = {"transfer": "201", "transfer_django": "201"}.get(route, "200")

    def call(env: dict) -> None:
        statuses = []
        answer = application(env, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(answer)
        if hasattr(answer, "close"):
            answer.close()  # Django's request_finished: connections back to their pools
        if not statuses[0].startswith(expected):
            fail(f"{route}: {env['REQUEST_METHOD']} {env['PATH_INFO']} answered {statuses[0]}")

    if route.startswith("get_user"):
        ids = list(get_user_model().objects.order_by("id").values_list("id", flat=True)[:1000])
        if not ids:
            fail("no users: run `manage.py seed_demo` first")
        counter = iter(range(10**12))

        def one():
            call(environ_for("GET", f"/api/users/{ids[next(counter) % len(ids)]}"))

    elif route == "product":
        sku = Product.objects.order_by("id").values_list("sku", flat=True).first()
        if sku is None:
            fail("no products: run `manage.py seed_demo` first")

        def one():
            call(environ_for("GET", f"/api/market/products/{sku}"))

    else:
        user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
        token = api_token_create(user=user)
        accounts = list(Account.objects.filter(owner_id=user.pk).order_by("id").values_list("id", flat=True)[:2])
        while len(accounts) < 2:
            accounts.append(services.account_create(balance_cents=1_000_000, owner_id=user.pk).pk)
        prefix = f"cpu-{os.getpid()}-{time.time_ns()}-"
        counter = iter(range(10**12))

        def one():
            i = next(counter)
            src, dst = (accounts[0], accounts[1]) if i % 2 == 0 else (accounts[1], accounts[0])
            body = json.dumps({"from_account": src, "to_account": dst, "amount_cents": 1}).encode()
            call(
                environ_for(
                    "POST",
                    "/api/market/transfers",
                    body,
                    HTTP_AUTHORIZATION=f"Token {token}",
                    HTTP_IDEMPOTENCY_KEY=f"{prefix}{i}",
                )
            )

    connections.close_all()  # the fixture's connections back to their pools, as between requests
    return one


def measure(one, n: int, batches: int, warmup: int) -> dict:
    for _ in range(warmup):
        one()
    size = max(n // batches, 1)
    cpu, thread = [], []
    for _ in range(batches):
        p0, t0 = time.process_time(), time.thread_time()
        for _ in range(size):
            one()
        cpu.append((time.process_time() - p0) / size * 1e6)
        thread.append((time.thread_time() - t0) / size * 1e6)
    return {
        "cpu_us": round(statistics.median(cpu), 1),
        "cpu_us_min": round(min(cpu), 1),
        "thread_us": round(statistics.median(thread), 1),
        "requests": size * batches,
    }


def profile(one, route: str, n: int, kind: str) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    if kind == "cprofile":
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            one()
        prof.disable()
        path = VAR / f"cpu-{route}.prof"
        prof.dump_stats(path)
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
        stats.print_stats(40)
        print(out.getvalue())
        print(f"profile: {path}  ({round(stats.total_calls / n)} calls per request)")
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        profiler.start()
        for _ in range(n):
            one()
        profiler.stop()
        path = VAR / f"cpu-{route}-pyinstrument.txt"
        path.write_text(profiler.output_text(unicode=False, color=False, show_all=True))
        print(profiler.output_text(unicode=False, color=False))
        print(f"profile: {path}")


def run_one(args: argparse.Namespace) -> None:
    """One route in this interpreter: the environment first, then the application."""
    log = Path(args.log) if args.log else VAR / f"cpu-{args.route}.log"
    if os.environ.get("PYTHONUNBUFFERED") != "1":  # stderr as the server's: unbuffered from the start
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONUNBUFFERED": "1"})
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        APP_ROLE="web",
        API_WRITE_RATE_PER_MINUTE="1000000000",  # one token drives every write (bench/run.py does the same)
        API_FAST_LANE="false" if args.route.endswith("_django") or args.route == "product" else "true",
    )
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="cpu-per-request-"))
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)  # sys.stderr (fd 2): the logging handler's stream, as gunicorn's worker's
    os.close(fd)

    one = driver(args.route)
    import gc

    gc.collect()
    gc.freeze()  # as gunicorn.conf.py's post_worker_init
    lines_before = log.stat().st_size if log.is_file() else 0
    if args.profile:
        for _ in range(args.warmup):
            one()
        profile(one, args.route, args.n, args.profile)
        return
    result = measure(one, args.n, args.batches, args.warmup)
    result["route"] = args.route
    if log.is_file():
        text = log.read_bytes()[lines_before:]
        result["log_lines_per_request"] = round(text.count(b"\n") / (result["requests"] + args.warmup), 2)
    from config.multidb.lifecycle import close_all_pools

    close_all_pools()
    print(json.dumps(result))


def main() -> None:
    args = parse_args()
    if args.route:
        run_one(args)
        return
    rows = []
    for route in DEFAULT_ROUTES:
        cmd = [sys.executable, __file__, "--route", route, "-n", str(args.n), "--batches", str(args.batches)]
        cmd += ["--warmup", str(args.warmup)] + (["--log", args.log] if args.log else [])
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if out.returncode != 0:
            log = Path(args.log) if args.log else VAR / f"cpu-{route}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            fail(f"{route} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}{tail}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'route':<18}{'cpu us/req':>12}{'(min)':>9}{'thread us':>11}{'log lines':>11}")
    for r in rows:
        lines = r.get("log_lines_per_request", "-")
        print(f"{r['route']:<18}{r['cpu_us']:>12}{r['cpu_us_min']:>9}{r['thread_us']:>11}{lines:>11}")


if __name__ == "__main__":
    main()
