"""TLS per alias against a real server with a certificate from a CA made here.

The server certificate names `localhost` only (no IP address), so the same
server is a match under the name `localhost` and a mismatch under `127.0.0.1`:
`verify-full` must accept the first and refuse the second, naming the alias.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.pgcluster import IS_ROOT, PgCluster, wait_for
from tests.support.project import manage
from tests.support.servers import Gunicorn, cluster_env, http

pytestmark = pytest.mark.cluster


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_server_cert(where: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a throwaway CA and a server certificate for DNS:localhost."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=platform test CA",
        cwd=where,
    )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=where)
    (where / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=where,
    )
    return where / "ca.crt", where / "server.crt", where / "server.key"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    certs = tmp_path_factory.mktemp("tls")
    ca, crt, key = make_ca_and_server_cert(certs)
    cluster = PgCluster("tls")
    for f in (crt, key):
        shutil.copy(f, cluster.root / f.name)
        if IS_ROOT:
            shutil.chown(cluster.root / f.name, "postgres", "postgres")
    (cluster.root / key.name).chmod(0o600)
    cluster.settings.update(
        {"ssl": "on", "ssl_cert_file": str(cluster.root / crt.name), "ssl_key_file": str(cluster.root / key.name)}
    )
    cluster.start()
    for name in ("tls_shared", "tls_blog", "tls_market"):
        cluster.create_database(name)
    ca_copy = certs / "ca-for-app.crt"
    shutil.copy(ca, ca_copy)
    ca_copy.chmod(0o644)
    try:
        yield cluster, ca_copy
    finally:
        cluster.destroy()


def _env(cluster: PgCluster, ca: Path, *, blog_host: str, blog_mode: str = "verify-full", **extra: str) -> dict:
    urls = {
        "SHARED": cluster.url("tls_shared"),
        "MARKET": cluster.url("tls_market"),
        "BLOG": cluster.url("tls_blog", host=blog_host),
    }
    settings = {
        "SHARED_DATABASE_SSLMODE": "require",
        "MARKET_DATABASE_SSLMODE": "require",
        "BLOG_DATABASE_SSLMODE": blog_mode,
        "BLOG_DATABASE_SSLROOTCERT": str(ca),
        **extra,
    }
    return cluster_env(urls, **settings)


def _row(out: str, alias: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [alias])


def test_verify_full_with_the_ca_connects_over_tls(tls_cluster):
    cluster, ca = tls_cluster
    result = manage("dbcheck", env=_env(cluster, ca, blog_host="localhost"))
    assert result.returncode == 0, result.stdout + result.stderr
    for alias in ("default", "blog", "market"):
        row = _row(result.stdout, alias)
        assert "yes" in row and row[-1] == "ok", result.stdout
    assert _row(result.stdout, "blog")[1].startswith("localhost:")


def test_require_encrypts_without_a_ca_and_disable_does_not(tls_cluster):
    cluster, ca = tls_cluster
    env = _env(cluster, ca, blog_host="127.0.0.1", blog_mode="disable", BLOG_DATABASE_SSLROOTCERT="")
    result = manage("dbcheck", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "yes" in _row(result.stdout, "market")  # require, no CA configured
    blog = _row(result.stdout, "blog")
    assert "no" in blog and "yes" not in blog


def test_host_name_mismatch_fails_naming_the_alias(tls_cluster):
    cluster, ca = tls_cluster
    env = _env(cluster, ca, blog_host="127.0.0.1")  # the certificate names localhost only
    result = manage("dbcheck", env=env)
    assert result.returncode == 1
    blog = next(line for line in result.stdout.splitlines() if line.startswith("blog "))
    assert "FAILED" in blog and 'does not match host name "127.0.0.1"' in blog, result.stdout
    assert "blog" in result.stderr and "market" not in result.stderr  # exit message names only the failing alias
    assert _row(result.stdout, "market")[-1] == "ok"

    # verify-ca checks the chain only, so the same connection passes there.
    result = manage("dbcheck", env={**env, "BLOG_DATABASE_SSLMODE": "verify-ca"})
    assert result.returncode == 0, result.stdout

    server = Gunicorn(env, workers=1, threads=2)
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert "database 'blog'" in str(refused.value) and "does not match host name" in str(refused.value)


def test_gunicorn_serves_through_verified_tls(tls_cluster):
    cluster, ca = tls_cluster
    with Gunicorn(_env(cluster, ca, blog_host="localhost"), workers=1, threads=2).running() as server:
        # Readiness is eventually true: the first probe may meet pools still making their
        # first TLS connections (a 1 s deadline per alias) on a loaded machine.
        answers = []

        def ready() -> bool:
            answers.append(http("GET", server.url("/readyz"))[:2])
            return answers[-1][0] == 200

        try:
            wait_for(ready, timeout=30, interval=0.5, what="/readyz to answer 200 through verified TLS")
        except TimeoutError:
            pytest.fail(
                f"/readyz never answered 200; first and last answers: {answers[:2]} ... {answers[-2:]}\n"
                f"gunicorn:\n{server.output()}"
            )
        rows = cluster.execute(
            "SELECT a.application_name, s.ssl FROM pg_stat_ssl s "
            "JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'web:%'"
        )
        assert {app for app, _ in rows} >= {"web:default", "web:blog", "web:market"}
        assert all(ssl for _, ssl in rows), rows
