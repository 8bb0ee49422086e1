"""No database password in anything a person reads: the debug page, error answers,
dbcheck/dbstat output, gunicorn's log. And the production switches: `check --deploy`."""

from __future__ import annotations

import html
import http.client as http_client
import secrets
import subprocess
from urllib.parse import quote

import pytest

from tests.support.pgcluster import PgCluster, as_postgres
from tests.support.project import manage
from tests.support.servers import Gunicorn, cluster_env, http, migrate
from tests.support.topology import database_names

pytestmark = pytest.mark.cluster

# Characters that URLs encode and HTML escapes, so every form of it is looked for.
PASSWORD = f"Pw&{secrets.token_hex(6)}@x:y/z%"
WRONG = f"Wrong&{secrets.token_hex(6)}"
DBS = database_names("sec")
HBA = "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"


def forms(password: str) -> list[str]:
    return [password, quote(password, safe=""), html.escape(password), html.escape(quote(password, safe=""))]


def assert_no_password(text: str, password: str = PASSWORD) -> None:
    leaked = [f for f in forms(password) if f in text]
    assert not leaked, f"password leaked as {leaked!r}"


@pytest.fixture(scope="module")
def cluster():
    c = PgCluster("secrets")
    subprocess.run(as_postgres(["sh", "-c", f"cat > {c.data / 'pg_hba.conf'}"]), input=HBA, text=True, check=True)
    c.start()
    with c.connect() as admin:
        admin.execute("SET log_statement = 'none'")
        admin.execute("CREATE ROLE app LOGIN PASSWORD %s" % _quote(PASSWORD))
    for name in DBS.values():
        c.execute(f"CREATE DATABASE {name} OWNER app")
    try:
        yield c
    finally:
        c.destroy()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _env(cluster: PgCluster, password: str = PASSWORD, **extra: str) -> dict:
    urls = {p: f"postgres://app:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{db}" for p, db in DBS.items()}
    return cluster_env(urls, **extra)


@pytest.fixture(scope="module")
def debug_server(cluster):
    env = _env(cluster, DJANGO_DEBUG="true")
    migrate(env)
    server = Gunicorn(env, workers=1, threads=2).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/admin/login/", "/api/users/1"])
def test_debug_page_shows_settings_but_no_password(debug_server, path):
    # A Host outside ALLOWED_HOSTS: with DEBUG on, Django answers with its full debug page.
    status, page, _ = http("GET", debug_server.url(path), headers={"Host": "evil.example"})
    assert status == 400 and "DisallowedHost" in page
    assert "SHARED_DATABASE_URL" in page and "postgres://app:********@127.0.0.1" in page
    assert_no_password(page)


def test_database_fault_with_debug_on_is_a_503_naming_the_alias(cluster, debug_server):
    assert http("GET", debug_server.url("/api/users/1"))[0] == 404  # healthy: no such user
    cluster.stop()
    try:
        status, body, _ = http("GET", debug_server.url("/api/users/1"))
        assert status == 503 and body["error"]["database"] == "default", body
        status, body, _ = http("GET", debug_server.url("/admin/"), headers={"Cookie": "sessionid=" + "x" * 32})
        assert status == 503 and "The default database does not answer" in body, body  # a page, no traceback
        assert_no_password(str(body))
    finally:
        cluster.start()
    assert_no_password(debug_server.output())


def test_wrong_password_is_never_echoed(cluster):
    env = _env(cluster, WRONG)
    for command in ("dbcheck", "dbstat"):
        result = manage(command, env=env)
        assert result.returncode != 0
        assert "password authentication failed" in result.stdout + result.stderr
        assert_no_password(result.stdout + result.stderr, WRONG)
    server = Gunicorn(env, workers=1, threads=2)
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert "password authentication failed" in str(refused.value)
    assert_no_password(str(refused.value), WRONG)


def test_dbcheck_and_dbstat_of_a_healthy_site_show_no_password(cluster, debug_server):
    for command in ("dbcheck", "dbstat"):
        result = manage(command, env=_env(cluster))
        assert result.returncode == 0, result.stdout + result.stderr
        assert_no_password(result.stdout + result.stderr)


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "true",
    "DJANGO_ALLOWED_HOSTS": "platform.example.com",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
}


def test_check_deploy_is_clean_with_production_settings(cluster):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=_env(cluster, **PRODUCTION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # Without DJANGO_HTTPS the same check names what is missing.
    plain = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=_env(cluster, **{**PRODUCTION, "DJANGO_HTTPS": "false"})
    )
    assert plain.returncode != 0 and "SECURE_SSL_REDIRECT" in plain.stdout + plain.stderr


def _get_no_redirect(server, path: str, headers: dict | None = None) -> tuple[int, dict]:
    conn = http_client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def test_https_switch_redirects_plain_http_but_not_probes(cluster, debug_server):
    env = _env(cluster, **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"})
    with Gunicorn(env, workers=1, threads=2).running() as server:
        status, headers = _get_no_redirect(server, "/api/blog/posts")
        assert status == 301 and headers["Location"].startswith("https://")
        status, headers = _get_no_redirect(server, "/api/blog/posts", {"X-Forwarded-Proto": "https"})
        assert status == 200 and "max-age=31536000" in headers["Strict-Transport-Security"]
        assert _get_no_redirect(server, "/readyz")[0] == 200  # load balancer probes stay on plain http
    # The default (no DJANGO_HTTPS) serves plain http, as `make run` does.
    assert _get_no_redirect(debug_server, "/api/blog/posts")[0] == 200
