"""gunicorn settings and the hooks that keep pools safe around fork and shutdown.

- the environment is validated before anything else: a bad variable stops the
  master at once, naming it;
- `on_starting` (master, before binding): `SELECT 1` on every alias and the
  connection budget, probed from a short-lived child process (config/multidb/ops/boot.py),
  so the master never connects nor starts a thread and `--preload` stays safe;
  the master then must hold no pool;
- after fork (worker): pools, breakers and per-process state inherited from the
  master are forgotten by the resets registered with config.multidb.lifecycle.after_fork
  (one os.register_at_fork hook, so every fork gets them, not only gunicorn's);
- `post_worker_init` (worker): starts the thread that copies pool statistics
  into the Prometheus metrics, the span exporter when traces are on (the master
  installs the instrumentation but starts no exporter: `tracing.defer_export`),
  and freezes the loaded application for the garbage collector;
- `worker_exit` (worker): every pool is closed after in-flight requests finish;
- `child_exit` (master): a dead worker's live gauges are dropped from /metrics.

Metrics use prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR is
a fresh temporary directory unless set (a set one is emptied of old samples).
"""

import glob
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("APP_ROLE", "web")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

from config.multidb.conf import databases as _topology  # noqa: E402
from config.multidb.conf.env import ConfigError, fail, read_dotenv  # noqa: E402

read_dotenv()
try:
    _ENV = _topology.read_all()
    _topology.build(_ENV)
except ConfigError as _exc:
    fail(str(_exc))

from config.multidb import tracing as _tracing  # noqa: E402

_tracing.defer_export()  # before anything loads the app (--preload): each worker exports, the master never

# Must happen before anything imports prometheus_client (it picks its storage at
# import). The mark survives a config reload (SIGHUP), so on_exit still cleans up.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="platform-metrics-")
    os.environ["PLATFORM_METRICS_DIR_OWNED"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
_METRICS_DIR_OWNED = os.environ.get("PLATFORM_METRICS_DIR_OWNED") == os.environ["PROMETHEUS_MULTIPROC_DIR"]

wsgi_app = "config.wsgi:application"
bind = f"[{_ENV['BIND']}]:{_ENV['PORT']}" if ":" in _ENV["BIND"] else f"{_ENV['BIND']}:{_ENV['PORT']}"
workers = _ENV["WEB_CONCURRENCY"]
threads = _ENV["WEB_THREADS"]
worker_class = "gthread"
timeout = _ENV["WEB_TIMEOUT"]
graceful_timeout = _ENV["WEB_GRACEFUL_TIMEOUT"]
keepalive = 5
# Connections a worker holds at once: its threads plus half as many idle keep-alive
# ones. Without a cap, one worker can end up holding most of a client's (or a proxy's)
# long-lived connections while the other idles, each worker being one core at most
# (the GIL); past the cap a response closes its connection and the client reconnects
# to a worker with room (bench/profile.md: the bimodal rounds this removed).
worker_connections = threads + max(threads // 2, 1)
control_socket_disable = True
accesslog = None  # the application writes one access line per request (config/httpkit/logs.py)
errorlog = "-"
loglevel = "info"


def _threads_per_worker(cfg):
    """Connections a worker can hold per alias are bounded by its threads (gthread, sync)."""
    kind = cfg.worker_class_str.rsplit(".", 1)[-1].lower()
    if "gthread" in kind or "threadworker" in kind:
        return cfg.threads
    if "sync" in kind:
        return 1
    return None  # async workers: bounded by the pool only


def on_starting(server):
    if not _METRICS_DIR_OWNED:  # samples of an earlier run would be summed with ours
        for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(stale)

    import django

    django.setup()
    if _ENV["LOG_FORMAT"] == "json":  # gunicorn's own lines in the application's shape from here on
        from config.httpkit.logs import json_formatter

        for handler in server.log.error_log.handlers:
            handler.setFormatter(json_formatter())
    from config.multidb.ops.boot import boot_checks

    problems = boot_checks(
        workers=server.cfg.workers, threads=_threads_per_worker(server.cfg), log=server.log, binds=server.cfg.bind
    )
    if problems:
        for line in problems:
            server.log.error("boot check failed: %s", line)
        on_exit(server)  # gunicorn does not call it when on_starting exits
        sys.exit(1)
    server.log.info("boot checks passed; the master holds no database pool")


def post_worker_init(worker):
    import gc

    from config.multidb.metrics import start_refresher

    start_refresher()
    from config.multidb import tracing

    tracing.start_export()  # nothing when traces are off
    # Django, the settings and the loaded modules live as long as the worker: move them out of the
    # cyclic collector's reach, so a full collection scans only what requests allocate instead of
    # pausing every thread for tens of milliseconds (a p99 spike).
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    from config.multidb import tracing
    from config.multidb.lifecycle import close_all_pools

    close_all_pools()
    tracing.flush()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _METRICS_DIR_OWNED:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
