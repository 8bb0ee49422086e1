"""Settings that are unsafe in production, judged by gunicorn's master at boot (config/multidb/ops/boot.py):
a secret key anyone could know and debug pages on a reachable address stop it; a database
reached without TLS across a network and an open /metrics only warn."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)

from config.multidb.conf.aliases import aliases
from config.multidb.conf.env import BASE_DIR

SAFE_SSLMODES = ("require", "verify-ca", "verify-full")


def example_secret_keys() -> set[str]:
    """The DJANGO_SECRET_KEY of .env.example: copied as is, it is public."""
    try:
        lines = (BASE_DIR / ".env.example").read_text().splitlines()
    except OSError:
        return set()
    return {line.split("=", 1)[1].strip() for line in lines if line.startswith("DJANGO_SECRET_KEY=")} - {""}


def secret_key_problem(key: str) -> str | None:
    if key in example_secret_keys():
        return "DJANGO_SECRET_KEY is the example value of .env.example"
    if (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        # Django's own rule (check --deploy, security.W009).
        return (
            f"DJANGO_SECRET_KEY is insecure (fewer than {SECRET_KEY_MIN_LENGTH} characters, fewer than "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct ones, or the {SECRET_KEY_INSECURE_PREFIX!r} prefix)"
        )
    return None


def is_local_host(host: str) -> bool:
    """A loopback address, `localhost` or a Unix socket. Other names are not resolved (the
    master makes no network call): they count as remote."""
    host = host.strip().strip("[]")
    if not host or host.startswith(("/", "unix:")) or host.lower().startswith("%2f"):
        return True
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_host(bind: str) -> str:
    """The address part of one of gunicorn's binds: `127.0.0.1:8000`, `[::1]:8000`, `unix:/path`."""
    if bind.startswith(("unix:", "fd://")):
        return bind
    if bind.startswith("["):
        return bind[1:].split("]", 1)[0]
    return bind.rsplit(":", 1)[0] if bind.count(":") == 1 else bind


def _database_urls() -> list[tuple[str, str, str]]:
    """(URL variable, hosts, sslmode) of every primary, replica and direct URL."""
    out = []
    for alias, info in aliases().items():
        if info.kind == "jobs":  # the same server as its primary
            continue
        sd = settings.DATABASES[alias]
        sslmode = sd["OPTIONS"].get("sslmode", "prefer")
        name = info.var("REPLICA_URL") if info.kind == "replica" else info.var("URL")
        out.append((name, sd["HOST"], sslmode))
        if info.kind == "primary" and sd.get("DIRECT"):
            out.append((info.var("DIRECT_URL"), sd["DIRECT"]["HOST"], sslmode))
    return out


def unsafe_settings(binds: list[str], log) -> list[str]:
    """Problems that must stop the server; warnings are logged, one line each."""
    problems = []
    secret = secret_key_problem(settings.SECRET_KEY)
    if secret:
        problems.append(
            f"{secret}; set a long random one: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    remote_binds = [b for b in binds if not is_local_host(bind_host(b))]
    shown = ", ".join(remote_binds)
    if settings.DEBUG and remote_binds:
        problems.append(
            f"DJANGO_DEBUG=true while gunicorn binds {shown}, not a loopback address: debug pages show "
            "settings and code to whoever reaches it; set DJANGO_DEBUG=false or BIND=127.0.0.1"
        )
    for name, hosts, sslmode in _database_urls():
        remote = [h for h in hosts.split(",") if not is_local_host(h)]
        if remote and sslmode not in SAFE_SSLMODES:
            prefix = name.split("_DATABASE_", 1)[0]
            log.warning(
                "boot check: %s points at %s, not this machine, with sslmode=%s: traffic and password may cross "
                "the network unencrypted; set %s_DATABASE_SSLMODE=require (or verify-full)",
                name,
                ",".join(remote),
                sslmode,
                prefix,
            )
    if remote_binds and not settings.ENV.get("METRICS_TOKEN"):
        log.warning(
            "boot check: METRICS_TOKEN is empty while gunicorn binds %s, not a loopback address: /metrics is open "
            "to whoever reaches it; set METRICS_TOKEN or restrict /metrics at the proxy",
            shown,
        )
    return problems
