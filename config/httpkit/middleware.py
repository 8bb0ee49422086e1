"""Turns API errors and database faults into JSON answers instead of 500s; records request metrics."""

from __future__ import annotations

import logging
import sys

from django.core import signing
from django.core.exceptions import MiddlewareNotUsed
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError

from config.httpkit.errors import response_for_database_error
from config.httpkit.logs import log_access
from config.multidb import metrics, replicas
from config.multidb.conf.aliases import alias_or_none, aliases
from config.multidb.resilience.breaker import DatabaseUnavailable


class DatabaseErrorMiddleware:
    """A database fault becomes `503 database_unavailable`, wherever it is raised.

    In a view: `process_exception`. In a middleware further in (sessions, auth,
    audit) Django turns the exception into a response itself: `handler500`
    answers 503 when DEBUG is off, and with DEBUG on (the technical 500 page) the
    `got_request_exception` receiver below remembers the fault so `__call__` can
    still answer 503. Nothing but real bugs ever reaches a client as a 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        fault = request.__dict__.pop("_database_fault_response", None)
        if fault is not None and response.status_code >= 500:
            return fault
        return response

    def process_exception(self, request, exception):
        return response_for_database_error(exception, request)


def _remember_database_fault(sender, request=None, **kwargs):
    if request is not None:
        response = response_for_database_error(sys.exc_info()[1], request)
        if response is not None:
            request._database_fault_response = response


got_request_exception.connect(_remember_database_fault, dispatch_uid="config.httpkit.middleware.database_fault")


class AllowedHostsMiddleware:
    """ALLOWED_HOSTS for the short API stack (config/wsgi.py), which has no CommonMiddleware:
    a forged Host header is refused (400) there too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.get_host()  # raises DisallowedHost, which Django answers with 400
        return self.get_response(request)


def _user_id(request):
    """The id of the token's user or of an already-loaded session user; never a query."""
    user = request.__dict__.get("api_user") or request.__dict__.get("_cached_user")
    return getattr(user, "pk", None)


class RequestMetricsMiddleware:
    """Outermost: counts every request by domain and status, its latency, and how long
    it held a pooled connection of each alias (config/multidb/metrics.py)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.started = metrics.request_started
        self.finished = metrics.request_finished

    def __call__(self, request):
        started = self.started()
        response = self.get_response(request)
        databases = self.finished(request, response, started)
        log_access(request.method, request.path, response.status_code, started, _user_id(request), databases)
        return response


class ReadYourWritesMiddleware:
    """Routes a request's reads (config/multidb/replicas.py) and keeps each client's own writes visible to it.

    GET/HEAD/OPTIONS may read from replicas; other methods use the primaries for
    everything. After a request that wrote to a database with a replica, the
    primary's WAL position goes into a signed cookie ({alias: lsn}); that
    client's later reads of the database go to the primary until the replica has
    replayed the position. A replica that fails during a safe request is skipped
    and the view runs again on the primaries. Not used at all without replicas.
    """

    COOKIE = "db_lsn"
    COOKIE_SALT = "config.multidb.replicas.lsn"
    COOKIE_MAX_AGE_S = 300  # far above any sane REPLICA_MAX_LAG_MS: a replica lagging more is skipped anyway

    def __init__(self, get_response):
        if not any(info.kind == "replica" for info in aliases().values()):
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        client_lsns = self._read_cookie(request)
        with replicas.read_scope(replicas=request.method in replicas.SAFE_METHODS, client_lsns=client_lsns) as scope:
            response = self.get_response(request)
            lsns = dict(client_lsns)
            for base in sorted(scope.written):
                try:
                    lsn = replicas.primary_lsn(base)
                except Exception:  # the write committed; only its visibility guarantee is lost
                    logging.getLogger("config.multidb.replicas").warning("could not read the WAL position of %s", base)
                    continue
                replicas.monitor(replicas.replica_alias(base)).note_primary_lsn(lsn)
                lsns[base] = max(lsn, lsns.get(base, 0))
        self._write_cookie(request, response, client_lsns, lsns)
        return response

    def process_exception(self, request, exception):
        """A replica failed while serving a safe request: run the view again on the primaries."""
        scope = replicas.current_scope()
        alias = getattr(exception, "alias", None) or getattr(exception, "db_alias", None)
        info = alias_or_none(alias) if isinstance(alias, str) else None
        if (
            scope is None
            or not scope.replicas
            or info is None
            or info.kind != "replica"
            or not isinstance(exception, (DatabaseUnavailable, OperationalError, InterfaceError))
        ):
            return None
        replicas.monitor(alias).mark_failed(type(exception).__name__)
        scope.use_primary()
        match = request.resolver_match
        try:
            return match.func(request, *match.args, **match.kwargs)
        except Exception as exc:
            response = response_for_database_error(exc, request)
            if response is None:
                raise
            return response

    def _read_cookie(self, request) -> dict[str, int]:
        raw = request.COOKIES.get(self.COOKIE)
        if not raw:
            return {}
        try:
            data = signing.loads(raw, salt=self.COOKIE_SALT, max_age=self.COOKIE_MAX_AGE_S)
        except signing.BadSignature:  # expired or forged: the client only loses the guarantee
            return {}
        out = {}
        for base, text in data.items() if isinstance(data, dict) else ():
            if isinstance(base, str) and replicas.has_replica(base) and isinstance(text, str):
                try:
                    out[base] = replicas.parse_lsn(text)
                except ValueError:
                    pass
        return out

    def _write_cookie(self, request, response, before: dict[str, int], lsns: dict[str, int]) -> None:
        # Drop positions the replica is known (without a query) to have replayed.
        for base in list(lsns):
            status = replicas.monitor(replicas.replica_alias(base)).last_status()
            if lsns[base] == before.get(base) and status is not None and lsns[base] <= status.replay_lsn:
                del lsns[base]
        if lsns == before:
            return
        if not lsns:
            response.delete_cookie(self.COOKIE, samesite="Lax")
            return
        value = signing.dumps({b: replicas.format_lsn(v) for b, v in sorted(lsns.items())}, salt=self.COOKIE_SALT)
        response.set_cookie(
            self.COOKIE, value, max_age=self.COOKIE_MAX_AGE_S, httponly=True, samesite="Lax", secure=request.is_secure()
        )
