"""Real server processes for tests: gunicorn with the project's config, on a free port.

with Gunicorn(env).running() as server:
    requests to server.url("/healthz")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.pgcluster import free_port, wait_for
from tests.support.project import ROOT

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def cluster_env(urls: dict[str, str], **extra: str) -> dict[str, str]:
    """A clean environment for a project subprocess pointed at `urls` ({prefix: url}, one per Domain)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "_DATABASE_" not in k and not k.startswith(("DJANGO_SETTINGS", "WEB_", "PORT", "APP_ROLE"))
    }
    env.setdefault("DJANGO_SECRET_KEY", "test-secret-key-for-subprocesses-only-" + "k3y" * 8)  # passes the boot check
    for prefix, url in urls.items():
        env[f"{prefix}_DATABASE_URL"] = url
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate_all"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


def http(
    method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 10
) -> tuple[int, dict | str, dict]:
    """One request; returns (status, parsed JSON or text, headers). Never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, hdrs = err.code, err.read(), dict(err.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


class Gunicorn:
    def __init__(self, env: dict[str, str], *, workers: int = 1, threads: int = 4, args: tuple[str, ...] = ()):
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "WEB_CONCURRENCY": str(workers), "WEB_THREADS": str(threads)}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(f"/tmp/gunicorn-test-{self.port}.log")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, wait: bool = True) -> Gunicorn:
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [GUNICORN, "-c", "config/gunicorn.conf.py", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            wait_for(self._healthy, timeout=60, what=f"gunicorn on port {self.port}")
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return http("GET", self.url("/healthz"), timeout=1)[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    @contextlib.contextmanager
    def running(self):
        self.start()
        try:
            yield self
        finally:
            self.stop()


def test_database_urls() -> dict[str, str]:
    """URLs of pytest-django's test databases, by environment prefix, for a subprocess of the project."""
    from django.conf import settings
    from django.db import connections

    from tests.support.topology import TOPOLOGY

    out = {}
    for domain in TOPOLOGY:
        sd = connections[domain.alias].settings_dict
        user = sd["USER"] or "postgres"
        auth = f"{user}:{sd['PASSWORD']}@" if sd["PASSWORD"] else f"{user}@"
        out[domain.prefix] = f"postgres://{auth}{sd['HOST']}:{sd['PORT'] or 5432}/{sd['NAME']}"
    assert settings.DATABASES  # settings are loaded
    return out


test_database_urls.__test__ = False  # a helper, not a test
