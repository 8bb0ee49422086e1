#!/usr/bin/env python3
"""The fault benchmark: market's server freezes in the middle of a run.

Two throwaway clusters (shared + blog in one, market alone in the other, so
freezing market freezes nothing else), migrated and seeded, and gunicorn with
the shipped settings (2 workers x WEB_THREADS). Two kinds of clients at once:

    blog    closed loop, BENCH_BLOG_CLIENTS keep-alive clients on GET /api/blog/posts:
            they measure how much the server can serve
    market  open loop, BENCH_MARKET_RATE requests/s on GET /api/market/products/<sku>
            from a thread pool: steady traffic that does not back off

Timeline: warm-up, BEFORE seconds healthy, HANG seconds with the market server
SIGSTOPped, AFTER seconds resumed. Reported (and checked against the targets):

    blog_ratio        blog 200s per second while market hangs / before        >= 0.9
    market_503_p50    median latency of market 503s once the breaker is open  <= 50 ms
    first_success     first market 200 after the server resumes               <= 1 s
    http_500          answers with status 500 (or no answer at all)            == 0

Writes bench/results/faults-<time>.json; exit 1 when a target is missed.
Knobs: BENCH_WARMUP (3), BENCH_BEFORE (10), BENCH_HANG (10), BENCH_AFTER (6),
BENCH_BLOG_CLIENTS (6), BENCH_MARKET_RATE (40), BENCH_WORKERS (2).
"""

from __future__ import annotations

import datetime as dt
import http.client as http_client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.pgcluster import PgCluster  # noqa: E402
from tests.servers import Gunicorn, cluster_env, migrate  # noqa: E402
from tests.servers import http as http_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "blog_ratio": (">=", 0.9),
    "market_503_p50_ms": ("<=", 50.0),
    "first_success_s": ("<=", 1.0),
    "http_500": ("==", 0),
}


def knob(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Answer:
    kind: str
    sent: float
    done: float
    status: int
    reason: str = ""


class Recorder:
    def __init__(self):
        self.answers: list[Answer] = []
        self.lock = threading.Lock()

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


def request(conn_holder: dict, port: int, path: str) -> tuple[int, str]:
    """GET on a kept-alive connection (reopened after an error); (status, reason of a 503)."""
    for attempt in (1, 2):
        conn = conn_holder.get("c") or http_client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn_holder["c"] = conn
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http_client.HTTPException):
            conn.close()
            conn_holder.pop("c", None)
            if attempt == 2:
                return 0, "no answer"
            continue
        reason = ""
        if resp.status >= 500:
            try:
                reason = json.loads(body)["error"].get("reason", "")
            except (ValueError, KeyError, TypeError):
                reason = "not json"
        return resp.status, reason
    return 0, "no answer"


def seed(env: dict, server: Gunicorn) -> str:
    def manage(*args):
        out = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        return out.stdout

    manage("createsuperuser", "--noinput", "--username", "benchstaff", "--email", "bench@example.com")
    token = manage("create_api_token", "benchstaff").strip().splitlines()[-1]
    auth = {"Authorization": f"Token {token}"}
    status, body, _ = http_json(
        "POST",
        server.url("/api/market/products"),
        {"sku": "BENCH-1", "name": "Bench", "price_cents": 100, "stock": 10},
        headers=auth,
    )
    assert status == 201, body
    for i in range(20):
        status, body, _ = http_json(
            "POST",
            server.url("/api/blog/posts"),
            {"title": f"Post {i}", "body": "text " * 50, "status": "published"},
            headers=auth,
        )
        assert status == 201, body
    return "BENCH-1"


def run() -> dict:
    warmup, before, hang, after = (
        knob("BENCH_WARMUP", 3),
        knob("BENCH_BEFORE", 10),
        knob("BENCH_HANG", 10),
        knob("BENCH_AFTER", 6),
    )
    blog_clients, market_rate = int(knob("BENCH_BLOG_CLIENTS", 6)), knob("BENCH_MARKET_RATE", 40)
    workers = int(knob("BENCH_WORKERS", 2))
    main, market = PgCluster("bench-main").start(), PgCluster("bench-market").start()
    server = None
    try:
        urls = {
            "SHARED": main.create_database("bench_shared"),
            "BLOG": main.create_database("bench_blog"),
            "MARKET": market.create_database("bench_market"),
        }
        env = cluster_env(urls)
        migrate(env)
        server = Gunicorn(env, workers=workers, threads=int(env.get("WEB_THREADS", 8))).start()
        sku = seed(env, server)
        rec = Recorder()
        stop = threading.Event()
        t0 = time.monotonic()

        def blog_client():
            holder: dict = {}
            while not stop.is_set():
                sent = time.monotonic()
                status, reason = request(holder, server.port, "/api/blog/posts")
                rec.add(Answer("blog", sent, time.monotonic(), status, reason))

        local = threading.local()

        def market_once():
            holder = local.__dict__.setdefault("holder", {})
            sent = time.monotonic()
            status, reason = request(holder, server.port, f"/api/market/products/{sku}")
            rec.add(Answer("market", sent, time.monotonic(), status, reason))

        def market_feeder(pool: ThreadPoolExecutor):
            interval, n = 1.0 / market_rate, 0
            while not stop.is_set():
                n += 1
                pool.submit(market_once)
                stop.wait(max(t0 + n * interval - time.monotonic(), 0))

        pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="market")
        threads = [threading.Thread(target=blog_client, daemon=True) for _ in range(blog_clients)]
        threads.append(threading.Thread(target=market_feeder, args=(pool,), daemon=True))
        for t in threads:
            t.start()
        marks = {"start": t0 + warmup}
        stop.wait(warmup + before)
        marks["hang"] = time.monotonic()
        market.hang()
        stop.wait(hang)
        market.resume()
        marks["resume"] = time.monotonic()
        stop.wait(after)
        marks["end"] = time.monotonic()
        stop.set()
        for t in threads:
            t.join(40)
        pool.shutdown(wait=True)
        return analyse(
            rec.answers,
            marks,
            config={
                "workers": workers,
                "threads": int(env.get("WEB_THREADS", 8)),
                "blog_clients": blog_clients,
                "market_rate": market_rate,
                "warmup_s": warmup,
                "before_s": before,
                "hang_s": hang,
                "after_s": after,
            },
        )
    finally:
        if server is not None:
            server.stop()
        market.destroy()
        main.destroy()


def analyse(answers: list[Answer], marks: dict, config: dict) -> dict:
    start, hang, resume, end = marks["start"], marks["hang"], marks["resume"], marks["end"]
    blog = [a for a in answers if a.kind == "blog"]
    market = [a for a in answers if a.kind == "market"]
    ok_before = sum(1 for a in blog if a.status == 200 and start <= a.done < hang)
    ok_during = sum(1 for a in blog if a.status == 200 and hang <= a.done < resume)
    opened = min((a.done for a in market if a.reason == "breaker_open" and a.done >= hang), default=None)
    fast = sorted(
        (a.done - a.sent) * 1000 for a in market if a.status == 503 and opened is not None and opened <= a.sent < resume
    )
    first_ok = min((a.done for a in market if a.status == 200 and a.done >= resume), default=None)
    counts: dict[str, dict[str, int]] = {}
    for a in answers:
        key = str(a.status) + (f" {a.reason}" if a.reason else "")
        counts.setdefault(a.kind, {}).setdefault(key, 0)
        counts[a.kind][key] += 1
    blog_before_rps = ok_before / (hang - start)
    blog_during_rps = ok_during / (resume - hang)
    result = {
        "config": config,
        "blog_rps_before": round(blog_before_rps, 1),
        "blog_rps_during_hang": round(blog_during_rps, 1),
        "blog_ratio": round(blog_during_rps / blog_before_rps, 3) if blog_before_rps else 0.0,
        "blog_non_200_during_hang": sum(1 for a in blog if a.status != 200 and hang <= a.done < resume),
        "market_p50_before_ms": round(
            statistics.median((a.done - a.sent) * 1000 for a in market if a.status == 200 and start <= a.done < hang), 2
        ),
        "breaker_open_after_s": round(opened - hang, 2) if opened else None,
        "market_503_p50_ms": round(statistics.median(fast), 2) if fast else None,
        "market_503_p95_ms": round(fast[int(len(fast) * 0.95) - 1], 2) if fast else None,
        "market_503_count": len(fast),
        "first_success_s": round(first_ok - resume, 3) if first_ok else None,
        "http_500": sum(1 for a in answers if a.status == 500 or a.status == 0),
        "answers": counts,
        "duration_s": round(end - start, 1),
    }
    # Per second, relative to the freeze: blog 200s, market 200s and 503s.
    timeline = []
    for second in range(int(start - hang) - 1, int(end - hang) + 1):
        lo, hi = hang + second, hang + second + 1
        bucket = [a for a in answers if lo <= a.done < hi]
        timeline.append(
            {
                "t": second,
                "blog_200": sum(1 for a in bucket if a.kind == "blog" and a.status == 200),
                "market_200": sum(1 for a in bucket if a.kind == "market" and a.status == 200),
                "market_503": sum(1 for a in bucket if a.kind == "market" and a.status == 503),
            }
        )
    result["timeline"] = timeline
    result["targets"] = {
        k: {"target": f"{op} {v}", "met": _met(result.get(k), op, v)} for k, (op, v) in TARGETS.items()
    }
    return result


def _met(value, op: str, target) -> bool:
    if value is None:
        return False
    return {">=": value >= target, "<=": value <= target, "==": value == target}[op]


def main() -> int:
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"faults-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("answers", "timeline", "targets")}, indent=2))
    print("t(s) blog_200 market_200 market_503   (t=0: market frozen; t=HANG: resumed)")
    for row in result["timeline"]:
        print(f"{row['t']:>4} {row['blog_200']:>8} {row['market_200']:>10} {row['market_503']:>10}")
    print("answers:", json.dumps(result["answers"]))
    print(f"written to {path.relative_to(ROOT)}")
    missed = [k for k, t in result["targets"].items() if not t["met"]]
    if missed:
        print("MISSED:", ", ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
