"""Scaling scenarios: real streaming replicas, a real PgBouncer, the app in subprocesses.

The project's settings are read once per process, so every scenario that needs
a replica or a pooler in its topology runs in a fresh process: gunicorn
(tests/support/servers.py) or `run_django()` below.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

from tests.support.pgcluster import PgCluster
from tests.support.project import ROOT
from tests.support.servers import cluster_env, migrate
from tests.support.topology import database_names

DATABASES = database_names("scale")  # {"SHARED": "scale_shared", ...}

_PRELUDE = """
import json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
django.setup()
out = {}
"""


def run_django(env: dict[str, str], code: str, timeout: float = 120) -> dict:
    """Run `code` in a fresh process of the project configured by `env`; returns its `out` dict."""
    script = _PRELUDE + textwrap.dedent(code) + "\nprint('RESULT ' + json.dumps(out, default=str))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :])


def make_superuser_token(env: dict[str, str], username: str = "staff") -> dict:
    """{"key", "id"} of a superuser (the API's permissions are Django's: superusers hold them all)."""
    return run_django(
        env,
        f"""
        from django.contrib.auth import get_user_model
        from config.users.tokens import api_token_create
        user, _ = get_user_model().objects.get_or_create(
            username={username!r}, defaults={{"is_staff": True, "is_superuser": True}})
        out["key"] = api_token_create(user=user)
        out["id"] = user.pk
    """,
    )


def make_staff_token(env: dict[str, str], username: str = "staff") -> str:
    return make_superuser_token(env, username)["key"]


class Browser:
    """An HTTP client that keeps cookies, as a browser or a well-behaved API client does."""

    def __init__(self, token: str | None = None):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.token = token

    def request(
        self,
        method: str,
        url: str,
        body: dict | None = None,
        timeout: float = 15,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)


def fresh_databases(cluster: PgCluster) -> dict[str, str]:
    """The three project databases on `cluster`, migrated; returns {prefix: url}."""
    urls = {prefix: cluster.create_database(name) for prefix, name in DATABASES.items()}
    migrate(cluster_env(urls))
    return urls
