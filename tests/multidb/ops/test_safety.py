"""Unsafe production settings at gunicorn's boot: a known or weak secret key and debug pages on a
reachable address stop it with one line naming the variable; a plaintext remote database and an
open /metrics on a reachable address warn once each and the server starts."""

from __future__ import annotations

import secrets
from urllib.parse import urlparse

import pytest

from config.multidb.ops.safety import bind_host, is_local_host, secret_key_problem
from tests.multidb.ops.test_boot import boot_and_wait, failures
from tests.support.logs import messages
from tests.support.ops import uses_test_databases
from tests.support.servers import ROOT, http

EXAMPLE_KEY = next(
    line.split("=", 1)[1]
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line.startswith("DJANGO_SECRET_KEY=")
)
GOOD_KEY = secrets.token_urlsafe(50)


def warnings(out: str) -> list[str]:
    return messages(out, level="warning", starting="boot check: ")


@pytest.mark.parametrize(
    "key, says",
    [
        (EXAMPLE_KEY, "the example value of .env.example"),
        ("django-insecure-" + secrets.token_urlsafe(50), "insecure"),
        (secrets.token_urlsafe(30), "insecure"),  # 40 characters
        ("ab" * 40, "insecure"),  # two distinct characters
    ],
    ids=["example", "django-insecure", "short", "repetitive"],
)
@uses_test_databases
def test_an_insecure_secret_key_stops_gunicorn_in_one_line_naming_the_variable(ops_env, key, says):
    code, out = boot_and_wait({**ops_env, "DJANGO_SECRET_KEY": key})
    assert code != 0
    (problem,) = failures(out)
    assert problem.startswith("DJANGO_SECRET_KEY is ") and says in problem, problem
    assert key not in out and "Booting worker" not in out


@uses_test_databases
def test_debug_on_a_reachable_address_stops_gunicorn(ops_env):
    env = {**ops_env, "DJANGO_SECRET_KEY": GOOD_KEY, "DJANGO_DEBUG": "true", "BIND": "0.0.0.0"}
    code, out = boot_and_wait(env)
    assert code != 0
    (problem,) = failures(out)
    assert problem.startswith("DJANGO_DEBUG=true while gunicorn binds 0.0.0.0:") and "BIND=127.0.0.1" in problem
    assert "Booting worker" not in out


@uses_test_databases
def test_debug_on_loopback_boots(ops_env, serve):
    server = serve({**ops_env, "DJANGO_SECRET_KEY": GOOD_KEY, "DJANGO_DEBUG": "true", "BIND": "127.0.0.1"})
    out = server.output()
    assert "boot check failed" not in out and not warnings(out)


@uses_test_databases
def test_plaintext_remote_database_and_open_metrics_warn_once_each_and_boot_goes_on(ops_env, ops_urls, serve):
    # A multi-host URL whose second host is another machine: libpq takes the first (this one) and
    # the server starts, but sslmode=prefer (the default) would let the password cross the network.
    url = urlparse(ops_urls["BLOG"])
    port = url.port or 5432
    remote = url._replace(netloc=f"{url.username}@127.0.0.1,db.invalid:{port}").geturl()
    env = {**ops_env, "DJANGO_SECRET_KEY": GOOD_KEY, "BIND": "0.0.0.0", "BLOG_DATABASE_URL": remote}
    server = serve(env)
    assert http("GET", server.url("/readyz"))[0] in (200, 503)  # serving
    out = server.output()
    assert "boot check failed" not in out and "the master holds no database pool" in out
    database, metrics = warnings(out)  # exactly two lines, one each
    assert database.startswith("BLOG_DATABASE_URL points at db.invalid, not this machine, with sslmode=prefer")
    assert "set BLOG_DATABASE_SSLMODE=require" in database
    assert metrics.startswith("METRICS_TOKEN is empty while gunicorn binds 0.0.0.0:")
    # The local databases and a set token give no warning.
    server.stop()
    env = {**ops_env, "DJANGO_SECRET_KEY": GOOD_KEY, "BIND": "0.0.0.0", "METRICS_TOKEN": secrets.token_urlsafe(20)}
    assert not warnings(serve(env).output())


def test_what_counts_as_local_and_as_a_weak_key():
    assert all(is_local_host(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost", "/run/postgresql"))
    assert not any(is_local_host(h) for h in ("0.0.0.0", "::", "10.0.0.5", "db.example.com", "fd://3"))
    assert [bind_host(b) for b in ("127.0.0.1:8000", "[::1]:8000", "0.0.0.0:80", "unix:/tmp/g.sock")] == [
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "unix:/tmp/g.sock",
    ]
    assert secret_key_problem(GOOD_KEY) is None
    assert secret_key_problem("k" * 50) is not None
