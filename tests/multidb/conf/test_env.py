"""Strict configuration: each bad variable stops manage.py and gunicorn at once, naming it."""

import subprocess

import pytest

from tests.support.project import ROOT, manage, project_env
from tests.support.servers import GUNICORN

SECRET_URL = "postgres://app:s3cr3t-pw@127.0.0.1:1/platform_blog"

CASES = [
    # (overrides, expected text in the message)
    ({"SHARED_DATABASE_URL": None}, "SHARED_DATABASE_URL is required"),
    (
        {"BLGO_DATABASE_URL": "postgres://x@127.0.0.1/y"},
        "BLGO_DATABASE_URL is not a variable this project knows; did you mean BLOG_DATABASE_URL?",
    ),
    (
        {"MARKET_DATABASE_POOL_MAXSIZE": "3"},
        "MARKET_DATABASE_POOL_MAXSIZE is not a variable this project knows; "
        "did you mean MARKET_DATABASE_POOL_MAX_SIZE?",
    ),
    ({"BLOG_DATABASE_POOL_MAX_SIZE": "ten"}, "BLOG_DATABASE_POOL_MAX_SIZE must be an integer"),
    ({"BLOG_DATABASE_POOL_TIMEOUT": "soon"}, "BLOG_DATABASE_POOL_TIMEOUT must be a number"),
    ({"MARKET_DATABASE_POOLER": "session"}, "MARKET_DATABASE_POOLER must be one of direct, transaction"),
    (
        {"SHARED_DATABASE_SSLMODE": "verify-full"},
        "SHARED_DATABASE_SSLMODE=verify-full needs SHARED_DATABASE_SSLROOTCERT",
    ),
    ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be a boolean"),
    ({"BLOG_DATABASE_URL": "mysql://app:s3cr3t-pw@host/db"}, "BLOG_DATABASE_URL must be a postgres:// URL"),
    ({"BLOG_DATABASE_URL": "postgres://app:s3cr3t-pw@[::1/db"}, "BLOG_DATABASE_URL"),
    ({"BLOG_DATABASE_URL": "postgres://app:s3cr3t-pw@/platform_blog"}, "BLOG_DATABASE_URL must name a host"),
    ({"BLOG_DATABASE_POOL_MIN_SIZE": "9", "BLOG_DATABASE_POOL_MAX_SIZE": "3"}, "BLOG_DATABASE_POOL_MIN_SIZE must not"),
    ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is required"),
]


def env_for(overrides: dict) -> dict:
    # .env in the project root is read too; these cases must hold whatever it says,
    # so the process gets complete, valid URLs of its own first.
    base = project_env(
        SHARED_DATABASE_URL="postgres://app:s3cr3t-pw@127.0.0.1:1/platform_shared",
        BLOG_DATABASE_URL=SECRET_URL,
        MARKET_DATABASE_URL="postgres://app:s3cr3t-pw@127.0.0.1:1/platform_market",
        DJANGO_SECRET_KEY="k" * 50,
    )
    env = {**base}
    for key, value in overrides.items():
        if value is None:
            env[key] = ""  # an empty real variable wins over .env and counts as unset
        else:
            env[key] = value
    return env


@pytest.mark.parametrize(
    "overrides,expected", CASES, ids=[next(iter(c[0])) + "-" + str(i) for i, c in enumerate(CASES)]
)
def test_manage_py_stops_naming_the_variable(overrides, expected):
    result = manage("check", env=env_for(overrides), timeout=20)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("overrides,expected", CASES[:4], ids=["missing", "prefix", "knob", "type"])
def test_gunicorn_stops_naming_the_variable(overrides, expected):
    env = env_for(overrides)
    result = subprocess.run(
        [GUNICORN, "-c", "config/gunicorn.conf.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode != 0
    assert expected in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout


def test_real_environment_wins_over_dotenv(tmp_path, monkeypatch):
    from config.multidb.conf.env import read_dotenv

    dotenv = tmp_path / ".env"
    dotenv.write_text("BLOG_DATABASE_POOL_MAX_SIZE=3\nBLOG_DATABASE_POOL_MIN_SIZE=1\n")
    monkeypatch.setenv("BLOG_DATABASE_POOL_MAX_SIZE", "7")
    monkeypatch.delenv("BLOG_DATABASE_POOL_MIN_SIZE", raising=False)
    read_dotenv(dotenv)
    import os

    assert os.environ["BLOG_DATABASE_POOL_MAX_SIZE"] == "7"
    assert os.environ["BLOG_DATABASE_POOL_MIN_SIZE"] == "1"
    monkeypatch.delenv("BLOG_DATABASE_POOL_MIN_SIZE")


def test_every_alias_is_explicit():
    """Every pool knob is set deliberately; labels follow `<role>:<alias>`."""
    code = (
        "import json; from django.conf import settings\n"
        "print(json.dumps({a: [d['OPTIONS']['pool'], d['OPTIONS']['application_name'], d['OPTIONS']['connect_timeout'],"
        " d['OPTIONS'].get('options', '')] for a, d in settings.DATABASES.items()}))"
    )
    result = manage("shell", "-c", code, env=env_for({"APP_ROLE": "web"}))
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout.splitlines()[-1])
    assert set(data) == {"default", "blog", "market", "default_jobs", "blog_jobs", "market_jobs"}
    for alias, (pool, label, connect_timeout, options) in data.items():
        assert {
            "min_size",
            "max_size",
            "timeout",
            "max_waiting",
            "max_lifetime",
            "max_idle",
            "reconnect_timeout",
        } <= set(pool)
        assert pool["reconnect_timeout"] <= 10
        assert connect_timeout >= 1
        assert "statement_timeout=" in options
        if alias.endswith("_jobs"):
            assert label == f"jobs:{alias.removesuffix('_jobs')}"
        else:
            assert label == f"web:{alias}"


def test_transaction_pooler_mode_drops_session_settings():
    code = (
        "import json; from django.conf import settings; d = settings.DATABASES['market']\n"
        "print(json.dumps([d['DISABLE_SERVER_SIDE_CURSORS'], 'options' in d['OPTIONS'],"
        " d['OPTIONS'].get('prepare_threshold')]))"
    )
    result = manage("shell", "-c", code, env=env_for({"MARKET_DATABASE_POOLER": "transaction"}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[true, false, null]"
