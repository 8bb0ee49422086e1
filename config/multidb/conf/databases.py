"""The databases every process opens: the variables each domain of the topology file
(config/topology.py) reads, and the DATABASES entries and pools built from them.

Per domain `<alias>` the process gets up to three aliases:
    <alias>           the web/cli pool (application_name `<role>:<alias>`)
    <alias>_jobs      a small pool for long jobs (`jobs:<alias>`)
    <alias>_replica   read-only, when `<P>_DATABASE_REPLICA_URL` is set
"""

from __future__ import annotations

import os
from typing import Any

from config.multidb.conf.aliases import AliasInfo
from config.multidb.conf.env import ConfigError, Var, check_spelling, env, parse
from config.multidb.conf.topology import Domain, domains

JOBS_SUFFIX = "_jobs"
REPLICA_SUFFIX = "_replica"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POOLERS = ("direct", "transaction")
ROLES = ("web", "cli", "test")


def domain_vars(prefix: str) -> list[Var]:
    """The knobs of one database, `<prefix>_DATABASE_<KNOB>`."""
    p = f"{prefix}_DATABASE_"
    return [
        Var(p + "URL", "url", required=True, help="postgres://user:password@host:port/name"),
        Var(p + "POOL_MIN_SIZE", "int", 1, help="connections kept open per process"),
        Var(
            p + "POOL_MAX_SIZE", "int", 8, help="most connections per process; keep it >= WEB_THREADS (docs/faults.md)"
        ),
        Var(
            p + "POOL_MAX_WAITING",
            "int",
            0,
            help="requests allowed to queue for a connection, more get 503 at once; 0 = bounded by the threads only",
        ),
        Var(p + "POOL_TIMEOUT", "float", 2.0, help="seconds a request waits for a free connection"),
        Var(p + "POOL_MAX_LIFETIME", "float", 1800.0, help="seconds before a connection is replaced"),
        Var(p + "POOL_MAX_IDLE", "float", 300.0, help="seconds an idle surplus connection is kept"),
        Var(
            p + "POOL_RECONNECT_TIMEOUT",
            "float",
            0.5,
            help="seconds the pool retries a failed connection before leaving recovery to the breaker's probe",
        ),
        Var(p + "CONNECT_TIMEOUT", "int", 2, help="seconds to open a connection"),
        Var(p + "CHECK_TIMEOUT", "float", 1.0, help="deadline in seconds for the check of a pooled connection"),
        Var(p + "STATEMENT_TIMEOUT_MS", "int", 5000, help="longest statement allowed (0 = none)"),
        Var(p + "IDLE_IN_TRANSACTION_TIMEOUT_MS", "int", 10000, help="longest idle-in-transaction (0 = none)"),
        Var(p + "SSLMODE", "choice", "prefer", choices=SSLMODES, help="libpq sslmode"),
        Var(p + "SSLROOTCERT", "str", "", help="CA file for verify-ca / verify-full"),
        Var(p + "POOLER", "choice", "direct", choices=POOLERS, help="transaction = behind PgBouncer/Supavisor"),
        Var(
            p + "POOLER_MAX_CLIENT_CONN",
            "int",
            100,
            help="client connections the pooler accepts (PgBouncer max_client_conn); judged by dbbudget and at boot",
        ),
        Var(
            p + "POOLER_POOL_SIZE",
            "int",
            20,
            help="server connections the pooler opens per database/user pair (default_pool_size + reserve_pool_size)",
        ),
        Var(p + "REPLICA_URL", "url", None, help="optional streaming replica for reads"),
        Var(p + "REPLICA_MAX_LAG_MS", "int", 5000, help="a replica further behind is skipped"),
        Var(p + "DIRECT_URL", "url", None, help="the server behind the pooler: migrations, job locks, dbbudget"),
    ]


GLOBAL_VARS: list[Var] = [
    Var("JOBS_DATABASE_POOL_MAX_SIZE", "int", 2, help="connections per jobs pool"),
    Var("JOBS_DATABASE_POOL_TIMEOUT", "float", 10.0, help="seconds a job waits for a jobs-pool connection"),
    Var("JOBS_DATABASE_STATEMENT_TIMEOUT_MS", "int", 600000, help="longest statement of a long job (0 = none)"),
    Var("DATABASE_BREAKER_FAILURES", "int", 3, help="connection failures in a row that open an alias's breaker"),
    Var("DATABASE_BREAKER_OPEN_SECONDS", "float", 0.5, help="seconds between probes while a breaker is open"),
    Var(
        "DATABASE_POOL_DISABLED",
        "bool",
        False,
        help="true = no pools, a new connection per request (benchmarks only; never in production)",
    ),
    Var("DJANGO_SECRET_KEY", "str", required=True, help="long random string"),
    Var("DJANGO_DEBUG", "bool", False, help="Django debug pages; never in production"),
    Var(
        "DJANGO_ALLOWED_HOSTS", "list", ["127.0.0.1", "localhost"], help="comma-separated host names the app answers to"
    ),
    Var(
        "DJANGO_HTTPS",
        "bool",
        False,
        help="true when clients reach the site over HTTPS (a TLS proxy in front): HSTS, secure cookies, redirect",
    ),
    Var(
        "DJANGO_TRUSTED_PROXY_COUNT",
        "int",
        0,
        help="reverse proxies in front of gunicorn that append to X-Forwarded-For; login throttling takes the "
        "client address N from the right of that header; 0 = no proxy, REMOTE_ADDR (the header is ignored)",
    ),
    Var("APP_ROLE", "choice", "cli", choices=ROLES, help="label of this process's connections"),
    Var(
        "BIND",
        "str",
        "127.0.0.1",
        help="address gunicorn listens on; 0.0.0.0 in a container or on a host reached from elsewhere",
    ),
    Var("PORT", "int", 8000, help="gunicorn listens on BIND:PORT"),
    Var("WEB_CONCURRENCY", "int", 2, help="gunicorn worker processes"),
    Var("WEB_THREADS", "int", 8, help="threads per worker; at most half may wait on any one database"),
    Var("WEB_TIMEOUT", "int", 30, help="seconds before gunicorn restarts a stuck worker"),
    Var("WEB_GRACEFUL_TIMEOUT", "int", 20, help="seconds in-flight requests get to finish after SIGTERM"),
    Var(
        "METRICS_TOKEN",
        "str",
        "",
        help="when set, GET /metrics answers only requests with 'Authorization: Bearer <token>' (Prometheus "
        "authorization.credentials); empty = open, restrict it at the proxy",
    ),
    Var(
        "API_WRITE_RATE_PER_MINUTE",
        "int",
        600,
        help="API writes allowed per token and minute (fixed one-minute windows counted on the token's row in the "
        "shared database, so across every worker and instance; workers claim 1/100 of it at a time); beyond it "
        "429 rate_limited; 0 = no limit",
    ),
    Var(
        "LOG_FORMAT",
        "choice",
        "json",
        choices=("json", "text"),
        help="json: one JSON object per log line (for a log collector); text: plain lines for a terminal",
    ),
    Var(
        "API_FAST_LANE",
        "bool",
        True,
        help="serve GET /api/users/<id> and POST /api/market/transfers without Django's request path "
        "(config/httpkit/fastlane.py); false = through Django",
    ),
]


def all_vars() -> list[Var]:
    out = list(GLOBAL_VARS)
    for domain in domains():
        out.extend(domain_vars(domain.prefix))
    return out


def read(var: Var) -> Any:
    return parse(var, os.environ.get(var.name))


def read_all() -> dict[str, Any]:
    """Every variable, parsed and validated; raises ConfigError on the first bad one."""
    declared = all_vars()
    check_spelling({v.name for v in declared}, list(os.environ))
    return {v.name: read(v) for v in declared}


def _url_config(name: str, url: str) -> dict[str, Any]:
    """Parse a URL with django-environ; errors name the variable, never the URL."""
    if "://" not in url or url.split("://", 1)[0] not in ("postgres", "postgresql", "pgsql"):
        raise ConfigError(f"{name} must be a postgres:// URL")
    try:
        cfg = env.db_url_config(url)
    except Exception:  # a malformed URL: its text may hold a password
        raise ConfigError(f"{name} is not a valid postgres:// URL") from None
    if not cfg.get("NAME"):
        raise ConfigError(f"{name} must name a database (postgres://host/NAME)")
    if not cfg.get("HOST"):
        raise ConfigError(f"{name} must name a host; nothing falls back to localhost")
    try:
        if cfg.get("PORT"):
            int(cfg["PORT"])
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number") from None
    return cfg


PREPARE_AFTER = 5  # psycopg's own default threshold


def _options(
    values: dict[str, Any], p: str, *, label: str, statement_ms: int, direct: bool, read_only: bool = False
) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "connect_timeout": max(values[p + "CONNECT_TIMEOUT"], 1),
        "application_name": label,
        "sslmode": values[p + "SSLMODE"],
    }
    if values[p + "SSLROOTCERT"]:
        opts["sslrootcert"] = values[p + "SSLROOTCERT"]
    if direct:
        # Session settings ride on the startup packet; a transaction pooler
        # rejects them, so there they come from per-role settings instead.
        settings = [
            f"statement_timeout={statement_ms}",
            f"idle_in_transaction_session_timeout={values[p + 'IDLE_IN_TRANSACTION_TIMEOUT_MS']}",
        ]
        if read_only:
            settings.append("default_transaction_read_only=on")
        opts["options"] = " ".join(f"-c {s}" for s in settings)
        # Parameters bound by the server, and a statement run PREPARE_AFTER times on one
        # connection prepared there: no quoting in Python, no re-planning in PostgreSQL.
        # Never through a transaction pooler: a prepared statement lives in one server session.
        opts["server_side_binding"] = True
        opts["prepare_threshold"] = PREPARE_AFTER
    return opts


def _pool(values: dict[str, Any], p: str, *, name: str, min_size: int, max_size: int, timeout: float) -> dict[str, Any]:
    return {
        "name": name,
        "min_size": min(min_size, max_size),
        "max_size": max_size,
        "timeout": timeout,
        "max_waiting": values[p + "POOL_MAX_WAITING"],
        "max_lifetime": values[p + "POOL_MAX_LIFETIME"],
        "max_idle": values[p + "POOL_MAX_IDLE"],
        "reconnect_timeout": values[p + "POOL_RECONNECT_TIMEOUT"],
    }


def build(values: dict[str, Any]) -> tuple[dict[str, dict], dict[str, AliasInfo]]:
    """DATABASES and the alias map, from validated variable values."""
    role = values["APP_ROLE"]
    databases: dict[str, dict] = {}
    aliases: dict[str, AliasInfo] = {}
    for domain in domains():
        p = f"{domain.prefix}_DATABASE_"
        if values[p + "POOL_MAX_SIZE"] < 1:
            raise ConfigError(f"{p}POOL_MAX_SIZE must be at least 1")
        if values[p + "POOL_MIN_SIZE"] > values[p + "POOL_MAX_SIZE"]:
            raise ConfigError(f"{p}POOL_MIN_SIZE must not exceed {p}POOL_MAX_SIZE")
        if values[p + "SSLMODE"] in ("verify-ca", "verify-full") and not values[p + "SSLROOTCERT"]:
            raise ConfigError(f"{p}SSLMODE={values[p + 'SSLMODE']} needs {p}SSLROOTCERT (the CA file)")
        pooler = values[p + "POOLER"]
        direct = pooler == "direct"
        url_cfg = _url_config(p + "URL", values[p + "URL"])
        direct_cfg = _url_config(p + "DIRECT_URL", values[p + "DIRECT_URL"]) if values[p + "DIRECT_URL"] else None
        base_entry = {
            "ENGINE": "config.multidb.backend",
            "NAME": url_cfg["NAME"],
            "USER": url_cfg.get("USER", ""),
            "PASSWORD": url_cfg.get("PASSWORD", ""),
            "HOST": url_cfg.get("HOST", ""),
            "PORT": str(url_cfg.get("PORT") or ""),
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,  # the backend's own check has a deadline
            "ATOMIC_REQUESTS": False,
            "DISABLE_SERVER_SIDE_CURSORS": not direct,
        }
        if direct_cfg:
            base_entry["DIRECT"] = {k: direct_cfg.get(k, "") for k in ("NAME", "USER", "PASSWORD", "HOST")}
            base_entry["DIRECT"]["PORT"] = str(direct_cfg.get("PORT") or "")

        def info(alias: str, kind: str, label: str, max_size: int, statement_ms: int) -> AliasInfo:
            return AliasInfo(
                alias,
                domain.alias,
                kind,
                label,
                max_size,
                pooler,
                prefix=domain.prefix,
                check_timeout=values[p + "CHECK_TIMEOUT"],
                statement_timeout_ms=statement_ms,
                idle_in_transaction_timeout_ms=values[p + "IDLE_IN_TRANSACTION_TIMEOUT_MS"],
                replica_max_lag_ms=values[p + "REPLICA_MAX_LAG_MS"],
                pooler_pool_size=values[p + "POOLER_POOL_SIZE"],
                pooler_max_client_conn=values[p + "POOLER_MAX_CLIENT_CONN"],
            )

        label = f"{role}:{domain.alias}"
        web_max = values[p + "POOL_MAX_SIZE"]
        databases[domain.alias] = {
            **base_entry,
            "OPTIONS": {
                **_options(values, p, label=label, statement_ms=values[p + "STATEMENT_TIMEOUT_MS"], direct=direct),
                "pool": _pool(
                    values,
                    p,
                    name=label,
                    min_size=values[p + "POOL_MIN_SIZE"],
                    max_size=web_max,
                    timeout=values[p + "POOL_TIMEOUT"],
                ),
            },
            "TEST": {"NAME": f"test_{url_cfg['NAME']}"},
        }
        aliases[domain.alias] = info(domain.alias, "primary", label, web_max, values[p + "STATEMENT_TIMEOUT_MS"])

        jobs_alias = domain.alias + JOBS_SUFFIX
        jobs_label = f"jobs:{domain.alias}"
        jobs_max = max(values["JOBS_DATABASE_POOL_MAX_SIZE"], 1)
        databases[jobs_alias] = {
            **base_entry,
            "OPTIONS": {
                **_options(
                    values,
                    p,
                    label=jobs_label,
                    statement_ms=values["JOBS_DATABASE_STATEMENT_TIMEOUT_MS"],
                    direct=direct,
                ),
                "pool": _pool(
                    values,
                    p,
                    name=jobs_label,
                    min_size=0,
                    max_size=jobs_max,
                    timeout=values["JOBS_DATABASE_POOL_TIMEOUT"],
                ),
            },
            "TEST": {"MIRROR": domain.alias},
        }
        aliases[jobs_alias] = info(
            jobs_alias, "jobs", jobs_label, jobs_max, values["JOBS_DATABASE_STATEMENT_TIMEOUT_MS"]
        )

        if values[p + "REPLICA_URL"]:
            rep_cfg = _url_config(p + "REPLICA_URL", values[p + "REPLICA_URL"])
            rep_alias = domain.alias + REPLICA_SUFFIX
            rep_label = f"{role}:{rep_alias}"
            databases[rep_alias] = {
                **base_entry,
                "NAME": rep_cfg["NAME"],
                "USER": rep_cfg.get("USER", ""),
                "PASSWORD": rep_cfg.get("PASSWORD", ""),
                "HOST": rep_cfg.get("HOST", ""),
                "PORT": str(rep_cfg.get("PORT") or ""),
                "OPTIONS": {
                    **_options(
                        values,
                        p,
                        label=rep_label,
                        statement_ms=values[p + "STATEMENT_TIMEOUT_MS"],
                        direct=direct,
                        read_only=True,
                    ),
                    "pool": _pool(
                        values,
                        p,
                        name=rep_label,
                        min_size=values[p + "POOL_MIN_SIZE"],
                        max_size=web_max,
                        timeout=values[p + "POOL_TIMEOUT"],
                    ),
                },
                "TEST": {"MIRROR": domain.alias},
            }
            aliases[rep_alias] = info(rep_alias, "replica", rep_label, web_max, values[p + "STATEMENT_TIMEOUT_MS"])
    if values["DATABASE_POOL_DISABLED"]:
        # The connect-per-request baseline of bench/: CONN_MAX_AGE stays 0, so
        # without a pool Django opens and closes a connection for every request.
        for entry in databases.values():
            entry["OPTIONS"].pop("pool", None)
    return databases, aliases


def app_alias_map() -> dict[str, str]:
    return {app: d.alias for d in domains() for app in d.apps}


def domain_aliases() -> list[str]:
    """The aliases `migrate_all` migrates: one per database, no jobs or replicas."""
    return [d.alias for d in domains()]


def domain_of(alias: str) -> Domain:
    for d in domains():
        if d.alias == alias:
            return d
    raise KeyError(alias)
