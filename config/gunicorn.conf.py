"""gunicorn settings and the hooks that keep pools safe around fork and shutdown.

- the environment is validated before anything else: a bad variable stops the
  master at once, naming it;
- `on_starting` (master, before binding): `SELECT 1` on every alias and the
  connection budget, both without opening a pool, so `--preload` stays safe;
- `post_fork` (worker): pools inherited from the master are forgotten;
- `worker_exit` (worker): every pool is closed after in-flight requests finish.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("APP_ROLE", "web")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

from config import databases as _topology  # noqa: E402
from config.env import ConfigError, fail, read_dotenv  # noqa: E402

read_dotenv()
try:
    _ENV = _topology.read_all()
    _topology.build(_ENV)
except ConfigError as _exc:
    fail(str(_exc))

wsgi_app = "config.wsgi:application"
bind = f"127.0.0.1:{_ENV['PORT']}"
workers = _ENV["WEB_CONCURRENCY"]
threads = _ENV["WEB_THREADS"]
worker_class = "gthread"
timeout = _ENV["WEB_TIMEOUT"]
graceful_timeout = _ENV["WEB_GRACEFUL_TIMEOUT"]
keepalive = 5
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = "info"


def on_starting(server):
    import django

    django.setup()
    from config.boot import boot_checks

    problems = boot_checks(workers=workers, threads=threads)
    if problems:
        for line in problems:
            server.log.error("boot check failed: %s", line)
        sys.exit(1)


def post_fork(server, worker):
    from config.db import forget_inherited_pools

    forget_inherited_pools()


def worker_exit(server, worker):
    from config.db import close_all_pools

    close_all_pools()
