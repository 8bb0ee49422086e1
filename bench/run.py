#!/usr/bin/env python3
"""`make bench`: the project side by side with the seed system, in one run.

Brings up fresh bench databases (migrated, 10,000 users, accounts, products,
posts), then four servers on free ports:

    seed            node app.js of ../shared/anchors/express-seed (a copy under var/bench)
    project         gunicorn -c config/gunicorn.conf.py, production settings, pooled
    project_django  the same with API_FAST_LANE=false (users by id and transfers through Django's request path)
    project_nopool  the same with DATABASE_POOL_DISABLED=true (a connection per request)
    bare            gunicorn + bench/bare_wsgi.py: no framework, one psycopg_pool per worker

and measures, alternating the systems inside every round (order rotated per
round), with wrk and bench/load.lua:

    get_user   GET /api/users/<random id>          seed, project, project_django, project_nopool, bare
    transfer   POST /api/transfer | /api/market/transfers on the same market_account rows   seed, project,
                                                                                   project_django
    mixed      GET /api/blog/posts + /api/market/products/<sku>, peak server connections vs budget

Ratios are taken against the seed of the same round, then the median
over rounds. Writes bench/results/<date>.json, docs/benchmarks.md and
docs/benchmarks.png. Every process started here is stopped on exit, Ctrl-C included.

Before/after in one run: BENCH_BASELINE=<path of another checkout>, or a git rev
(`make bench BASELINE=<rev>`: a worktree under var/bench, removed at the end), adds
`baseline` and `baseline_django`, that checkout's code on the same virtualenv and
databases, to the get_user and transfer rounds next to project and project_django (the
pair's order flips every other round), and reports project / baseline: rps and server
CPU per request, median (min-max) over rounds, in bench/results/<date>-vs-<commit>.json
(docs/ untouched). Refused if the migrations differ (BENCH_BASELINE_MIGRATIONS=allow
lets a baseline whose tables are the same, e.g. state-only migrations, serve anyway) or the
baseline fails a request before measuring. Transfers run one system at a time on the same accounts (1 cent from
10^12), so no system drains or locks rows under another's measurement.

Knobs (environment): BENCH_DURATION (s per run, 10), BENCH_ROUNDS (3),
BENCH_CONNECTIONS (16), BENCH_WRK_THREADS (1), BENCH_WARMUP (s, 3), BENCH_USERS
(10000), BENCH_REUSE_DB (true: keep an already seeded set of bench databases),
BENCH_WRITE_DOCS (default: only full runs rewrite docs/benchmarks.md),
BENCH_SCENARIOS (comma-separated subset of get_user,transfer,mixed; default all),
BENCH_DB_PREFIX (bench: databases <prefix>_shared, _blog, _market), BENCH_BASELINE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from config.multidb.conf.env import read_dotenv  # noqa: E402
from scripts import procfs  # noqa: E402

VAR = ROOT / "var" / "bench"
LOGS = VAR / "logs"
SEED_SRC = Path(os.environ.get("BENCH_SEED_DIR", ROOT.parent / "shared" / "anchors" / "express-seed"))
SEED_COPY = VAR / "express-seed"
VENV_BIN = ROOT / ".venv" / "bin"
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "").strip() or "bench"
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", DB_PREFIX):
    sys.exit("[bench] BENCH_DB_PREFIX must be a lower-case SQL identifier (letters, digits, _)")
PREFIXES = {"SHARED": f"{DB_PREFIX}_shared", "BLOG": f"{DB_PREFIX}_blog", "MARKET": f"{DB_PREFIX}_market"}

SCENARIOS = {
    # scenario: (systems, the first is the baseline of every ratio)
    "get_user": ["seed", "project", "project_django", "project_nopool", "bare"],
    "transfer": ["seed", "project", "project_django"],
    "mixed": ["project"],
}
# Scenarios a baseline checkout (BENCH_BASELINE) takes part in, next to its counterpart.
COMPARED = ("get_user", "transfer")
SYSTEM_LABELS = {  # application_name patterns: whose connections the sampler counts
    "seed": "bench:seed",
    "bare": "bench:bare",
    "project": "web:%",
    "project_django": "web:%",
    "project_nopool": "web:%",
    "baseline": "web:%",
    "baseline_django": "web:%",
}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        sys.exit(f"[bench] {name} must be an integer")


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return default if not raw else raw in ("1", "true", "yes", "on")


DURATION = env_int("BENCH_DURATION", 10)
ROUNDS = env_int("BENCH_ROUNDS", 3)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 16)
WRK_THREADS = env_int("BENCH_WRK_THREADS", 1)
WARMUP = env_int("BENCH_WARMUP", 3)
USERS = env_int("BENCH_USERS", 10000)
ACCOUNTS, PRODUCTS, POSTS = 500, 200, 60
OPENING_BALANCE_CENTS = 10**12  # transfers move 1 cent: no run can ever hit insufficient_funds
FULL_RUN = DURATION >= 10 and ROUNDS >= 3 and not os.environ.get("BENCH_SCENARIOS", "").strip()


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------- environment


def configured(name: str, default: str | None = None) -> str | None:
    """A variable as the project sees it: the environment, then .env, then var/local.env."""
    read_dotenv()
    return os.environ.get(name) or default


def bench_urls() -> dict[str, str]:
    """<P>_DATABASE_URL of the bench databases: the configured servers, other database names."""
    urls = {}
    for prefix, name in PREFIXES.items():
        url = configured(f"{prefix}_DATABASE_URL")
        if not url:
            sys.exit(f"[bench] {prefix}_DATABASE_URL is not set (run `make db` first)")
        urls[prefix] = urlunparse(urlparse(url)._replace(path="/" + name))
    return urls


def with_db(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + dbname))


def labelled(url: str, name: str) -> str:
    """The URL with an application_name, so the sampler can tell whose connections it sees."""
    return url + ("&" if "?" in url else "?") + f"application_name={name}"


def project_env(urls: dict[str, str], **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_POOL_DISABLED", "APP_ROLE", "PROMETHEUS_MULTIPROC_DIR", "PLATFORM_METRICS_DIR_OWNED")
    }
    env.update({f"{p}_DATABASE_URL": u for p, u in urls.items()})
    env.update(DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    # One token drives every write of the run: the per-token limit still counts each one, it never refuses.
    env.setdefault("API_WRITE_RATE_PER_MINUTE", "1000000000")
    env.update(extra)
    return env


def topology_values(env: dict[str, str], cwd: Path = ROOT) -> dict:
    """The parsed configuration of the checkout at `cwd` for `env` (workers, threads, pool sizes)."""
    out = subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-c",
            "import json; from config.multidb.conf.env import read_dotenv;"
            "from config.multidb.conf import databases as t;"
            "read_dotenv(); print(json.dumps(t.read_all(), default=str))",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the configuration of {cwd} is refused: {out.stderr.strip()}")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- baseline checkout


@dataclass
class Baseline:
    """Another checkout of the project whose servers join the rounds (BENCH_BASELINE)."""

    root: Path
    spec: str  # what BENCH_BASELINE said: a path or a git rev
    created: bool  # a worktree made by this run, removed at its end
    commit: str = "unknown"  # not a git checkout
    subject: str = ""
    dirty: bool = False

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "path": str(self.root),
            "temporary_worktree": self.created,
            "commit": self.commit,
            "subject": self.subject,
            "uncommitted_changes": self.dirty,
        }

    def label(self) -> str:
        if self.commit == "unknown":
            return "(not a git checkout)"
        return f"{self.commit}{' (with uncommitted changes)' if self.dirty else ''} {report.short(self.subject)}"


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def resolve_baseline(spec: str, repo: Path = ROOT, var: Path = VAR) -> Baseline:
    """A directory is used as it is; anything else must name a commit of `repo`, checked
    out as a detached worktree under `var` (a leftover of an interrupted run is replaced)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        root, created = path.resolve(), False
        missing = [f for f in ("manage.py", "config/gunicorn.conf.py") if not (root / f).is_file()]
        if missing:
            raise RuntimeError(f"BENCH_BASELINE={spec} is not a checkout of this project (no {', '.join(missing)})")
    else:
        found = git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
        if found.returncode != 0:
            raise RuntimeError(f"BENCH_BASELINE={spec} is neither a directory nor a git revision of {repo}")
        sha = found.stdout.strip()
        root, created = var / f"baseline-{sha[:12]}", True
        if root.exists():
            remove_worktree(root, repo)
        root.parent.mkdir(parents=True, exist_ok=True)
        made = git(repo, "worktree", "add", "--detach", str(root), sha)
        if made.returncode != 0:
            raise RuntimeError(f"git worktree add {root} {sha[:12]} failed: {made.stderr.strip()}")
    baseline = Baseline(root=root, spec=spec, created=created)
    head = git(root, "log", "-1", "--format=%h%x00%s")
    if head.returncode == 0 and "\0" in head.stdout:
        baseline.commit, baseline.subject = head.stdout.strip().split("\0", 1)
        baseline.dirty = bool(git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip())
    return baseline


def remove_worktree(root: Path, repo: Path = ROOT) -> None:
    """Only ever called on a worktree this run (or an interrupted earlier one) created under var/bench."""
    git(repo, "worktree", "remove", "--force", str(root))
    shutil.rmtree(root, ignore_errors=True)
    git(repo, "worktree", "prune")


SKIPPED_DIRS = {"var", "node_modules", "tests", "__pycache__"}


def migration_files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every `<app>/migrations/*.py` of a checkout."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith(".")]
        if os.path.basename(dirpath) != "migrations":
            continue
        for name in filenames:
            if name.endswith(".py"):
                path = Path(dirpath) / name
                found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def migration_differences(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """One line per migration file that is not the same in both checkouts."""
    out = []
    for name in sorted(ours.keys() | theirs.keys()):
        if name not in theirs:
            out.append(f"{name}: only in this checkout")
        elif name not in ours:
            out.append(f"{name}: only in the baseline")
        elif ours[name] != theirs[name]:
            out.append(f"{name}: differs")
    return out


def baseline_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """The project's server environment, with the baseline's code first on sys.path."""
    return {**env, "PYTHONPATH": str(root)}


def config_package_of(root: Path, env: dict[str, str]) -> Path:
    """Where the `config` package comes from for a process started in `root` with `env`."""
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import config; print(config.__path__[0])"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the baseline's `config` package does not import: {out.stderr.strip()[-500:]}")
    return Path(out.stdout.strip()).resolve()


def round_order(systems: list[str], r: int, partner_of: dict[str, str]) -> list[str]:
    """The order of round `r` (0-based): `systems` rotated by one place a round, each system
    kept next to its partner (project, baseline), the pair's order flipped on odd rounds,
    so neither side of a comparison always runs first. Without partners: a plain rotation."""
    units: list[list[str]] = []
    for system in systems:
        if units and partner_of.get(units[-1][0]) == system:
            units[-1].append(system)
        else:
            units.append([system])
    shift = r % len(units)
    units = units[shift:] + units[:shift]
    return [system for unit in units for system in (unit[::-1] if r % 2 else unit)]


def with_baseline(scenarios: dict[str, list[str]]) -> dict[str, list[str]]:
    """COMPARED scenarios with each baseline system right after its counterpart."""
    out = {}
    for scenario, systems in scenarios.items():
        if scenario in COMPARED:
            systems = [s for system in systems for s in (system, report.BASELINE_OF.get(system)) if s]
        out[scenario] = systems
    return out


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Procs:
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], *, env: dict[str, str], cwd: Path = ROOT) -> Proc:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = LOGS / f"{name}.log"
        with log.open("w") as fh:
            # Own session: a Ctrl-C in the terminal reaches only run.py, which stops these in order.
            popen = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 25.0) -> None:
        pgid = proc.popen.pid  # start_new_session: the group id is the leader's pid
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # workers left behind by a dead master
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        if proc.popen.poll() is None:
            proc.popen.wait(timeout=5)

    def stop_all(self) -> None:
        while self.started:
            proc = self.started.pop()
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {proc.name}: {exc}")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (a server and its workers)."""
    ticks = sum(int(f[12]) + int(f[13]) for f in procfs.group_stats(pgid))  # [0] is the pid
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    method: str,
    url: str,
    body: dict | None = None,
    token: str | None = None,
    headers: dict | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Token {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def wait_ready(proc: Proc, url: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            if http("GET", url, timeout=2.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} within {deadline_s:.0f}s:\n{proc.tail()}")


# --------------------------------------------------------------------------- databases and data


def server_conn(url: str, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(with_db(url, dbname), autocommit=True, connect_timeout=5)


def wait_outbox_drained(market_url: str, timeout_s: float = 120.0) -> float:
    """Seconds until the market audit outbox is empty (the relay delivered every event of the
    transfers just measured), so its catch-up does not land in the next measurement."""
    started = time.monotonic()
    with server_conn(market_url, urlparse(market_url).path.lstrip("/")) as conn:
        while conn.execute("SELECT EXISTS (SELECT 1 FROM market_auditoutbox)").fetchone()[0]:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the audit outbox still holds events after {timeout_s:.0f}s")
            time.sleep(0.1)
    return round(time.monotonic() - started, 2)


def databases_ready(urls: dict[str, str], ids_file: Path) -> bool:
    if not ids_file.exists():
        return False
    try:
        for url in urls.values():
            server_conn(url, urlparse(url).path.lstrip("/")).close()
        return True
    except psycopg.Error:
        return False


def create_databases(urls: dict[str, str]) -> None:
    for url in urls.values():
        name = urlparse(url).path.lstrip("/")
        with server_conn(url) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    say("created " + ", ".join(PREFIXES.values()))


def run_checked(cmd: list[str], env: dict[str, str], what: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def prepare_seed_copy() -> None:
    """npm ci into a copy of the read-only seed directory, once per package-lock."""
    SEED_COPY.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in ("app.js", "package.json", "package-lock.json"):
        src, dst = SEED_SRC / name, SEED_COPY / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
            changed = True
    stamp = SEED_COPY / "node_modules" / ".bench-installed"
    if changed or not stamp.exists():
        say("npm ci in var/bench/express-seed")
        run_checked(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], dict(os.environ), "npm ci", cwd=SEED_COPY
        )
        stamp.touch()


def seed_over_api(base: str, token: str) -> dict:
    """Accounts, products and posts through the project's own API (so the data
    is whatever the market and blog apps make of it). Returns what was made or
    why a part is missing."""
    made: dict = {"accounts": [], "skus": [], "posts": 0, "missing": {}}

    def post(path: str, body: dict) -> tuple[int, dict | None]:
        return http("POST", base + path, body, token=token)

    def many(fn, n):
        with ThreadPoolExecutor(max_workers=4) as ex:
            return list(ex.map(fn, range(n)))

    def create(what: str, path: str, body_of, n: int) -> list[dict] | None:
        """POST n bodies: the first alone (a missing endpoint is recorded, not fatal), the rest in parallel."""
        status, first = post(path, body_of(0))
        if status != 201:
            made["missing"][what] = f"POST {path} answered {status}: {first}"
            return None
        rest = many(lambda i: post(path, body_of(i + 1)), n - 1)
        bad = [r for r in rest if r[0] != 201]
        if bad:
            raise RuntimeError(f"creating {what}: {len(bad)} failed, first {bad[0]}")
        return [first["data"]] + [r[1]["data"] for r in rest]

    owner = int((VAR / "staff_id.txt").read_text())  # bench/seed.py's token user: transfers are the owner's
    accounts = create(
        "market_accounts",
        "/api/market/accounts",
        lambda i: {"owner": owner, "balance_cents": OPENING_BALANCE_CENTS},
        ACCOUNTS,
    )
    if accounts is not None:
        made["accounts"] = sorted(a["id"] for a in accounts)
    products = create(
        "market_products",
        "/api/market/products",
        lambda i: {"sku": f"BENCH-{i:05d}", "name": f"Bench product {i}", "price_cents": 100 + i, "stock": 1_000_000},
        PRODUCTS,
    )
    if products is not None:
        made["skus"] = [f"BENCH-{i:05d}" for i in range(PRODUCTS)]
    posts = create(
        "blog_posts",
        "/api/blog/posts",
        lambda i: {"title": f"Bench post {i}", "status": "published", "body": "Lorem ipsum dolor sit amet. " * 20},
        POSTS,
    )
    if posts is not None:
        made["posts"] = POSTS
    return made


# --------------------------------------------------------------------------- connection sampler


def group_tcp_ports(pgid: int) -> list[int]:
    """Local ports of the TCP sockets held by a process group: pg_stat_activity's client_port
    of its database connections, so servers with the same application_name are told apart."""
    return list(procfs.tcp_owners([int(f[0]) for f in procfs.group_stats(pgid)]))


class ConnectionSampler(threading.Thread):
    """Counts server connections of the bench databases every 100 ms: those of one
    system's process group (by client port; several servers share application_names),
    from its own connection to the `postgres` db."""

    def __init__(self, url: str, dbnames: list[str]):
        super().__init__(daemon=True, name="conn-sampler")
        self.conn = server_conn(url)
        self.dbnames = dbnames
        self.lock = threading.Lock()
        self.pattern: str | None = None
        self.pgid: int | None = None
        self.peak_total = 0
        self.peak_by_db: dict[str, int] = {}
        self.stopping = threading.Event()

    def begin(self, pattern: str, pgid: int) -> None:
        with self.lock:
            self.pattern, self.pgid, self.peak_total, self.peak_by_db = pattern, pgid, 0, {}

    def end(self) -> dict:
        with self.lock:
            result = {"total": self.peak_total, "by_database": dict(self.peak_by_db), "pattern": self.pattern}
            self.pattern = None
        return result

    def run(self) -> None:
        query = (
            "SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = ANY(%s) AND application_name LIKE %s AND client_port = ANY(%s) GROUP BY datname"
        )
        while not self.stopping.wait(0.1):
            with self.lock:
                pattern, pgid = self.pattern, self.pgid
            if pattern is None:
                continue
            try:
                rows = self.conn.execute(query, (self.dbnames, pattern, group_tcp_ports(pgid))).fetchall()
            except psycopg.Error:
                continue
            with self.lock:
                if self.pattern != pattern:
                    continue
                self.peak_total = max(self.peak_total, sum(n for _, n in rows))
                for db, n in rows:
                    self.peak_by_db[db] = max(self.peak_by_db.get(db, 0), n)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2)
        self.conn.close()


# --------------------------------------------------------------------------- wrk

RESULT_LINE = re.compile(r"^BENCH_RESULT (\{.*\})$", re.M)
_running_wrk: list[subprocess.Popen] = []


def wrk(url: str, mode: str, args: list[str], duration: int) -> dict:
    cmd = [
        "wrk",
        "-t",
        str(WRK_THREADS),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(ROOT / "bench" / "load.lua"),
        url,
        "--",
        mode,
        *args,
    ]
    popen = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    _running_wrk.append(popen)
    try:
        out, _ = popen.communicate(timeout=duration + 60)
    finally:
        _running_wrk.remove(popen)
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    match = RESULT_LINE.search(out)
    if popen.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({popen.returncode}):\n{out[-2000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["socket_errors"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p90_ms": round(lat["p90"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "max_ms": round(lat["max"] / 1000, 2),
        "non2xx": raw["non2xx"],
        "socket_errors": sum(errors.values()),
        "socket_error_kinds": {k: v for k, v in errors.items() if v},
        "bad_sample": raw["bad_sample"] if raw["bad_sample"]["status"] else None,
    }


# --------------------------------------------------------------------------- budget


def connection_budget(env: dict[str, str], values: dict) -> dict:
    """What the web fleet of this run may hold per database: `manage.py dbbudget
    --json` when the project has it, else workers x pool max per alias (marked)."""
    workers, threads = int(values["WEB_CONCURRENCY"]), int(values["WEB_THREADS"])
    cmd = [
        str(VENV_BIN / "python"),
        "manage.py",
        "dbbudget",
        "--json",
        "--instances",
        "1",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    computed = {name: workers * int(values[f"{prefix}_DATABASE_POOL_MAX_SIZE"]) for prefix, name in PREFIXES.items()}
    budget = {
        "source": "computed by bench/run.py: workers x <P>_DATABASE_POOL_MAX_SIZE (dbbudget not available)",
        "by_database": computed,
        "dbbudget": None,
    }
    try:
        data = json.loads(out.stdout)
    except ValueError:
        data = None
    if data is not None:
        budget["dbbudget"] = data
        from config.topology import TOPOLOGY

        alias_db = {d.alias: PREFIXES[d.prefix] for d in TOPOLOGY if d.prefix in PREFIXES}
        per_db = report.budget_from_dbbudget(data, alias_db)
        if per_db:
            budget.update(
                source="manage.py dbbudget --json (rows with role web; the server total with the "
                "jobs pools is in dbbudget.servers[].total)",
                by_database=per_db,
            )
    elif out.returncode not in (0, 1):
        budget["dbbudget_error"] = (out.stderr or out.stdout).strip().splitlines()[-1:] or ""
    budget["total"] = sum(budget["by_database"].values())
    return budget


# --------------------------------------------------------------------------- main


def machine_info(shared_url: str) -> dict:
    info: dict = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem_kb = int(
            next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]
        )
        info["memory_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    info["kernel"] = os.uname().release
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    for name, cmd in (("node", ["node", "--version"]), ("wrk", ["wrk", "-v"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            info[name] = (out.stdout or out.stderr).strip().splitlines()[0].split(" [")[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            info[name] = "?"
    try:
        with server_conn(shared_url) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            info["max_connections"] = int(conn.execute("SHOW max_connections").fetchone()[0])
    except psycopg.Error:
        pass
    for mod in ("django", "psycopg", "psycopg_pool", "gunicorn"):
        try:
            out = subprocess.run(
                [str(VENV_BIN / "python"), "-c", f"import {mod}; print({mod}.__version__)"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info[mod] = out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


def prepare_baseline(baseline: Baseline, env: dict[str, str], values: dict) -> dict[str, str]:
    """Checks that the baseline can serve this checkout's databases with its own code; returns
    its server environment. Raises RuntimeError (a clear refusal) otherwise."""
    say(f"baseline: {baseline.root} at {baseline.label()}")
    differences = migration_differences(migration_files(ROOT), migration_files(baseline.root))
    if differences and os.environ.get("BENCH_BASELINE_MIGRATIONS") == "allow":
        # The baseline only serves; its requests are still checked before measuring (smoke_baseline).
        say("note: migrations differ (BENCH_BASELINE_MIGRATIONS=allow):\n  " + "\n  ".join(differences))
    elif differences:
        raise RuntimeError(
            "the baseline's migrations are not this checkout's, so it cannot serve the databases this checkout "
            "migrates (compare with two separate runs instead):\n  " + "\n  ".join(differences)
        )
    benv = baseline_env(env, baseline.root)
    package = config_package_of(baseline.root, benv)
    if package != (baseline.root / "config").resolve():
        raise RuntimeError(f"a process started in {baseline.root} imports `config` from {package}")
    try:
        theirs = topology_values(benv, cwd=baseline.root)
    except RuntimeError:
        # A checkout from before config/multidb (issue 15) keeps its configuration elsewhere;
        # its requests are still checked before measuring (smoke_baseline).
        say("note: the baseline's configuration cannot be read the way this checkout's is; not compared")
        theirs = dict(values)
    for key in sorted(k for k in values if k.startswith("WEB_") or k.endswith("_POOL_MAX_SIZE")):
        if theirs.get(key) != values[key]:
            say(f"note: the baseline reads {key}={theirs.get(key)}, this checkout {values[key]}")
    return benv


def smoke_baseline(
    baseline: Baseline, base: dict[str, str], scenarios: dict, user_id: str, accounts: list, token: str
) -> None:
    """One request of each measured scenario to each baseline server, before any measurement."""
    for scenario in (s for s in COMPARED if s in scenarios):
        for system in (s for s in scenarios[scenario] if s in report.BASELINE_OF.values()):
            if scenario == "get_user":
                want, (status, body) = 200, http("GET", f"{base[system]}/api/users/{user_id}")
            else:
                want, (status, body) = (
                    201,
                    http(
                        "POST",
                        base[system] + "/api/market/transfers",
                        {"from_account": accounts[0], "to_account": accounts[1], "amount_cents": 1},
                        token=token,
                        headers={"Idempotency-Key": f"probe-{uuid.uuid4()}"},
                    ),
                )
            if status != want:
                raise RuntimeError(
                    f"the baseline ({baseline.label()}) does not serve {scenario} on the databases this checkout "
                    f"migrated: {system} answered {status} (want {want}): {json.dumps(body)[:300]}"
                )
    say("baseline answers every measured scenario")


def command_line() -> str:
    knobs = [f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_")]
    return " ".join(knobs + ["make bench"])


def main() -> int:
    for tool in ("wrk", "node", "npm"):
        if shutil.which(tool) is None:
            sys.exit(f"[bench] `{tool}` is not installed (Debian: apt-get install wrk nodejs npm)")
    started = time.monotonic()
    procs = Procs()
    sampler = None
    baseline: Baseline | None = None
    benv: dict[str, str] = {}

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        VAR.mkdir(parents=True, exist_ok=True)
        urls = bench_urls()
        env = project_env(urls)
        values = topology_values(env)
        workers, threads = values["WEB_CONCURRENCY"], values["WEB_THREADS"]
        spec = os.environ.get("BENCH_BASELINE", "").strip()
        if spec:
            baseline = resolve_baseline(spec)
            benv = prepare_baseline(baseline, env, values)
        machine = machine_info(urls["SHARED"])
        ids_file, token_file = VAR / "user_ids.txt", VAR / "token.txt"
        state_file = VAR / "data.json"

        reuse = (
            env_bool("BENCH_REUSE_DB", False)
            and databases_ready(urls, ids_file)
            and state_file.exists()
            and not json.loads(state_file.read_text())["missing"]
        )
        if not reuse:
            create_databases(urls)
            say("migrate_all")
            run_checked([str(VENV_BIN / "python"), "manage.py", "migrate_all"], env, "migrate_all")
            say(f"seeding {USERS} users")
            out = run_checked(
                [str(VENV_BIN / "python"), "bench/seed.py", str(VAR)],
                {**env, "BENCH_USERS": str(USERS)},
                "bench/seed.py",
            )
            say(f"seeded {json.loads(out.strip().splitlines()[-1])['users']} users")
        prepare_seed_copy()

        names = ["seed", "seed_market", "project", "project_django", "project_nopool", "bare"]
        ports = {name: free_port() for name in names + (["baseline", "baseline_django"] if baseline else [])}
        gunicorn = [str(VENV_BIN / "gunicorn"), "-c", "config/gunicorn.conf.py"]
        servers = {
            "project": procs.start("project", gunicorn, env={**env, "PORT": str(ports["project"])}),
            "project_django": procs.start(
                "project_django", gunicorn, env={**env, "PORT": str(ports["project_django"]), "API_FAST_LANE": "false"}
            ),
            "project_nopool": procs.start(
                "project_nopool",
                gunicorn,
                env={**env, "PORT": str(ports["project_nopool"]), "DATABASE_POOL_DISABLED": "true"},
            ),
            "bare": procs.start(
                "bare",
                [str(VENV_BIN / "gunicorn"), "-c", "bench/bare_gunicorn.conf.py"],
                env={
                    **env,
                    "PORT": str(ports["bare"]),
                    "WEB_CONCURRENCY": str(workers),
                    "WEB_THREADS": str(threads),
                    "BARE_DATABASE_URL": urls["SHARED"],
                    "BARE_POOL_MAX_SIZE": str(values["SHARED_DATABASE_POOL_MAX_SIZE"]),
                },
            ),
            # Two seed processes: the app reads one DATABASE_URL, users live in the
            # shared database and accounts in the market one.
            "seed": procs.start(
                "seed",
                ["node", "app.js"],
                cwd=SEED_COPY,
                env={**os.environ, "PORT": str(ports["seed"]), "DATABASE_URL": labelled(urls["SHARED"], "bench:seed")},
            ),
            "seed_market": procs.start(
                "seed_market",
                ["node", "app.js"],
                cwd=SEED_COPY,
                env={
                    **os.environ,
                    "PORT": str(ports["seed_market"]),
                    "ACCOUNTS_TABLE": "market_account",
                    "DATABASE_URL": labelled(urls["MARKET"], "bench:seed"),
                },
            ),
        }
        if baseline:  # the other checkout's gunicorn, its config/ and code (cwd and PYTHONPATH)
            for name, extra in (("baseline", {}), ("baseline_django", {"API_FAST_LANE": "false"})):
                servers[name] = procs.start(
                    name, gunicorn, env={**benv, "PORT": str(ports[name]), **extra}, cwd=baseline.root
                )
        base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        ids = ids_file.read_text().split()
        for name, proc in servers.items():
            if name == "seed_market":  # no users in that database: listening is ready
                wait_listening(proc, ports[name])
            else:
                health = "/healthz" if name.startswith(("project", "baseline")) else f"/api/users/{ids[0]}"
                wait_ready(proc, base[name] + health)
        say("servers up: " + ", ".join(f"{n}=:{p}" for n, p in ports.items()))

        token = token_file.read_text().strip()
        if reuse:
            data = json.loads(state_file.read_text())
        else:
            say(f"seeding {ACCOUNTS} accounts, {PRODUCTS} products, {POSTS} posts over the API")
            data = seed_over_api(base["project"], token)
            state_file.write_text(json.dumps(data))
        for part, why in data["missing"].items():
            say(f"not seeded: {part}: {why}")
        (VAR / "account_ids.txt").write_text("".join(f"{i}\n" for i in data["accounts"]))
        (VAR / "skus.txt").write_text("".join(f"{s}\n" for s in data["skus"]))

        skipped: dict[str, str] = {}
        only = [x.strip() for x in os.environ.get("BENCH_SCENARIOS", "").split(",") if x.strip()]
        scenarios = {
            k: v for k, v in (with_baseline(SCENARIOS) if baseline else SCENARIOS).items() if not only or k in only
        }
        if len(data["accounts"]) < 2:
            skipped["transfer"] = data["missing"].get("market_accounts", "no accounts")
        else:
            probe = http(
                "POST",
                base["project"] + "/api/market/transfers",
                {"from_account": data["accounts"][0], "to_account": data["accounts"][1], "amount_cents": 1},
                token=token,
                headers={"Idempotency-Key": f"probe-{uuid.uuid4()}"},
            )
            if probe[0] != 201:
                skipped["transfer"] = f"POST /api/market/transfers answered {probe[0]}: {probe[1]}"
        if not data["skus"] or not data["posts"]:
            skipped["mixed"] = (
                "; ".join(data["missing"].get(k, "") for k in ("market_products", "blog_posts") if k in data["missing"])
                or "no products or posts"
            )
        for name, why in skipped.items():
            say(f"skipping {name}: {why}")
            scenarios.pop(name, None)
        if baseline:
            smoke_baseline(baseline, base, scenarios, ids[0], data["accounts"], token)

        targets_of = {  # (url, wrk mode, args) per scenario and system
            "get_user": lambda s: (base[s], "users", [f"ids={ids_file}"]),
            "transfer": lambda s: (
                (base["seed_market"], "transfer_seed", [f"ids={VAR / 'account_ids.txt'}"])
                if s == "seed"
                else (base[s], "transfer_project", [f"ids={VAR / 'account_ids.txt'}", f"token={token_file}"])
            ),
            "mixed": lambda s: (base["project"], "mixed", [f"skus={VAR / 'skus.txt'}"]),
        }
        nonce = uuid.uuid4().hex[:8]

        def measure(scenario: str, system: str, duration: int, tag: str) -> dict:
            url, mode, args = targets_of[scenario](system)
            for proc in servers.values():
                if not proc.alive():  # e.g. a broad pkill from elsewhere on a shared machine
                    raise RuntimeError(
                        f"{proc.name} exited (code {proc.popen.returncode}) before {scenario}/{system}:\n{proc.tail()}"
                    )
            # Server CPU per request moves far less with other load on the machine than rps does.
            server = servers["seed_market" if (scenario, system) == ("transfer", "seed") else system]
            cpu_before = group_cpu_seconds(server.popen.pid)
            result = wrk(url, mode, args + [f"prefix={nonce}-{tag}-{system}"], duration)
            if scenario == "transfer" and system != "seed":
                # The relay's catch-up is part of a transfer's cost (counted below) and must not
                # spill into the next measurement.
                result["relay_drain_s"] = wait_outbox_drained(urls["MARKET"])
            cpu = group_cpu_seconds(server.popen.pid) - cpu_before
            result["server_cpu_us_per_request"] = round(cpu / result["requests"] * 1e6) if result["requests"] else None
            return result

        budget = connection_budget(env, values)
        sampler = ConnectionSampler(urls["SHARED"], list(PREFIXES.values()))
        sampler.start()

        if WARMUP > 0:
            say(f"warm-up, {WARMUP}s per system")
            for scenario, systems in scenarios.items():
                for system in systems:
                    warm = measure(scenario, system, WARMUP, "warmup")
                    if warm["non2xx"] or warm["socket_errors"]:
                        say(
                            f"  warm-up {scenario}/{system}: {warm['non2xx']} non-2xx, "
                            f"{warm['socket_errors']} socket errors, first: {warm['bad_sample']}"
                        )

        rounds = []
        for r in range(ROUNDS):
            runs = []
            for scenario, systems in scenarios.items():
                for system in round_order(systems, r, report.BASELINE_OF):
                    server_of = "seed_market" if (scenario, system) == ("transfer", "seed") else system
                    sampler.begin(SYSTEM_LABELS[system], servers[server_of].popen.pid)
                    try:
                        result = measure(scenario, system, DURATION, f"r{r + 1}")
                    finally:
                        peak = sampler.end()
                    result.update(scenario=scenario, system=system, peak_connections=peak)
                    runs.append(result)
                    say(
                        f"round {r + 1}/{ROUNDS} {scenario:<9} {system:<15} {result['rps']:>8.1f} rps  "
                        f"p50 {result['p50_ms']:>6.2f} ms  p99 {result['p99_ms']:>7.2f} ms  "
                        f"cpu/req {result['server_cpu_us_per_request']} us  non-2xx {result['non2xx']}  "
                        f"socket errors {result['socket_errors']}  peak conns {peak['total']}"
                        + (f"  relay caught up {result['relay_drain_s']}s later" if "relay_drain_s" in result else "")
                    )
                    if result["bad_sample"]:
                        say(f"  first non-2xx: {result['bad_sample']}")
            rounds.append({"round": r + 1, "runs": runs})

        machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command_line(),
            "full_run": FULL_RUN,
            "machine": machine,
            "settings": {
                "duration_s": DURATION,
                "rounds": ROUNDS,
                "warmup_s": WARMUP,
                "wrk_connections": CONNECTIONS,
                "wrk_threads": WRK_THREADS,
                "users": USERS,
                "accounts": len(data["accounts"]),
                "products": len(data["skus"]),
                "posts": data["posts"],
                "web_concurrency": workers,
                "web_threads": threads,
                "worker_class": "gthread",
                "pool_max_size": {p: values[f"{p}_DATABASE_POOL_MAX_SIZE"] for p in PREFIXES},
                "seed_pool_max": 10,
            },
            "baselines": {s: systems[0] for s, systems in SCENARIOS.items()},
            "skipped": skipped,
            "budget": budget,
            "baseline_checkout": baseline.describe() if baseline else None,
            "rounds": rounds,
        }
        results["summary"] = report.summarize(results)
        results["targets"] = report.targets(results)
        results["comparison"] = report.comparison(results)
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        # docs/benchmarks.md describes this checkout alone: a comparison run leaves it be unless asked.
        write_docs = env_bool("BENCH_WRITE_DOCS", FULL_RUN and baseline is None)
        paths = report.write(results, root=ROOT, write_docs=write_docs)
        for line in report.target_lines(results):
            say(line)
        for line in report.comparison_lines(results):
            say(line)
        say("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
        say(f"done in {results['elapsed_s']:.0f}s")
        return 0 if all(t["ok"] is not False for t in results["targets"]) else 1
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        for popen in list(_running_wrk):
            popen.kill()
        if sampler is not None:
            sampler.stop()
        procs.stop_all()
        if baseline is not None and baseline.created:
            remove_worktree(baseline.root)
            say(f"removed the temporary worktree {baseline.root.relative_to(ROOT)}")


def wait_listening(proc: Proc, port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name} is not listening on {port} after {deadline_s:.0f}s:\n{proc.tail()}")


if __name__ == "__main__":
    sys.exit(main())
