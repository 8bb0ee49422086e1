"""scripts/devdb.py as `make run` uses it: the user's URLs are used or named with the cause,
the local cluster only without any, and no tool rewrites what the user wrote."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.support.checkout import clean_env
from tests.support.pgcluster import PgCluster, as_postgres, free_port

PASSWORD = "Right-pw-4f9a"
# Under password auth PostgreSQL does not tell a missing role from a wrong password; a database
# open to everyone (trust) does, so the unknown role is tried there.
HBA = (
    "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost open_db all 127.0.0.1/32 trust\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)
KEYS = ("SHARED_DATABASE_URL", "BLOG_DATABASE_URL", "MARKET_DATABASE_URL")


@pytest.fixture(scope="module")
def guarded():
    """A server that asks for passwords, with a role `app` that may not create databases."""
    cluster = PgCluster("devdb")
    subprocess.run(as_postgres(["sh", "-c", f"cat > {cluster.data / 'pg_hba.conf'}"]), input=HBA, text=True, check=True)
    cluster.start()
    cluster.execute(f"CREATE ROLE app LOGIN NOCREATEDB PASSWORD '{PASSWORD}'")
    cluster.execute("CREATE DATABASE app_db OWNER app")
    cluster.execute("CREATE DATABASE open_db")
    yield cluster
    cluster.destroy()


def env_with(url: str) -> dict[str, str]:
    return clean_env(DJANGO_SECRET_KEY="x" * 50, **dict.fromkeys(KEYS, url))


def test_a_refused_url_of_the_users_stops_make_run_naming_it(checkout):
    dead = f"postgres://app:{PASSWORD}@127.0.0.1:{free_port()}/app_db"
    (checkout.root / ".env").write_text("".join(f"{key}={dead}\n" for key in KEYS))
    result = checkout.make("run", PORT=str(free_port()))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "SHARED_DATABASE_URL (app@127.0.0.1:" in out and "refuses connections" in out
    assert PASSWORD not in out
    assert not (checkout.root / "var" / "pg").exists(), "a local cluster stood in for the user's server"
    assert "Booting worker" not in out


@pytest.mark.parametrize(
    "url,words",
    [
        ("postgres://nobody@127.0.0.1:{port}/open_db", 'role "nobody" does not exist'),
        ("postgres://app:Wrong-pw@127.0.0.1:{port}/app_db", "password authentication failed"),
        ("postgres://app:{pw}@127.0.0.1:{port}/no_such_db", 'database "no_such_db" does not exist, and creating'),
    ],
    ids=["unknown-role", "bad-password", "no-such-database"],
)
def test_each_cause_is_named_with_the_variable(checkout, guarded, url, words):
    result = checkout.devdb("up", env=env_with(url.format(port=guarded.port, pw=PASSWORD)))
    assert result.returncode == 2
    assert result.stderr.startswith("[devdb] SHARED_DATABASE_URL (")
    assert words in result.stderr
    assert PASSWORD not in result.stderr + result.stdout and "Wrong-pw" not in result.stderr


def test_a_missing_database_is_created_when_the_role_may(checkout, guarded):
    name = f"made_{free_port()}"
    result = checkout.devdb("up", env=env_with(f"postgres://postgres@127.0.0.1:{guarded.port}/{name}"))
    assert result.returncode == 0, result.stderr
    assert guarded.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]) == [(1,)]


def test_some_urls_but_not_all_stop_naming_the_missing_ones(checkout, guarded):
    env = clean_env(SHARED_DATABASE_URL=guarded.url("app_db"))
    result = checkout.devdb("up", env=env)
    assert result.returncode == 2
    assert "BLOG_DATABASE_URL, MARKET_DATABASE_URL not set, while SHARED_DATABASE_URL is" in result.stderr
    assert not (checkout.root / "var" / "pg").exists()


def test_users_edits_survive_dbdown_and_run_and_manage_py_sees_the_same_databases(checkout):
    dotenv = checkout.root / ".env"
    dotenv.write_text("# mine\nWEB_CONCURRENCY=1\nDJANGO_ALLOWED_HOSTS=127.0.0.1,localhost,box.example\n")
    before = dotenv.read_bytes()
    assert checkout.make("db").returncode == 0
    local = (checkout.root / "var" / "local.env").read_text()
    assert checkout.devdb("down").returncode == 0
    second = checkout.make("db")
    assert second.returncode == 0, second.stderr
    assert dotenv.read_bytes() == before
    assert (checkout.root / "var" / "local.env").read_text() == local  # same key, same cluster
    # A bare manage.py reads the same files as make: no wrapper, no second configuration.
    check = checkout.manage("dbcheck")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "platform_blog" in check.stdout


def test_port_in_use_stops_make_run_before_any_work(checkout):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = checkout.make("run", PORT=str(port))
    assert result.returncode != 0
    assert f"port {port} is in use on 127.0.0.1 (another make run?); set PORT=" in result.stderr
    assert not (checkout.root / "var" / "pg").exists(), "it prepared databases before checking the port"
