"""The fast lane: plain WSGI routes in front of Django for the hottest endpoints (today
`GET /api/users/<id>`, registered by config/users, and `POST /api/market/transfers`, by market).

Django's request path (request object, URL resolving, signals, middleware,
response object) costs several times the query it serves on a by-id read
(bench/profile.md). For the registered routes (`register()`), `config/wsgi.py` calls the
lane first; the lane answers only the requests it fully understands and
returns None for everything else, which Django then answers exactly as before.
A handler decides to step aside before it writes anything (a malformed
transfer, a missing key or token go to Django, which answers 400/401); once
the service ran, the lane answers itself, errors included, so a write never
runs twice.

What the lane keeps from the middleware stack, so a client cannot tell:
- ALLOWED_HOSTS (a host Django would refuse falls through, and Django answers 400);
- SecurityMiddleware's headers, computed once by running SecurityMiddleware
  itself (an insecure request under SECURE_SSL_REDIRECT falls through);
- request metrics: requests and latency by domain, connection hold per route
  and alias (config/multidb/metrics.py);
- the database through Django's connection of the alias: pool, breaker,
  bulkhead, statement deadline, the alias on every error; a database fault is
  the same `503 database_unavailable` naming the database;
- the view's selector and service (one source for the SQL, the rules and the JSON
  shape), token authentication (the same statement: permissions, write rate limit,
  last use) and the audit actor of the token's user.
Read routing is the one thing it does not do: while an alias of the route has a
replica, requests fall through to Django (replica choice, read-your-writes cookie).

tests/httpkit/test_fastlane.py compares the lane's answers with Django's, byte for byte.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.security import SecurityMiddleware

from config.httpkit import requestid
from config.httpkit.auth import token_user
from config.httpkit.errors import error_response, response_for_database_error
from config.httpkit.logs import log_access
from config.multidb import metrics, replicas

log = logging.getLogger("django.request")  # where Django logs 4xx/5xx answers

Answer = tuple[int, dict, dict]  # (status, JSON body, extra headers)


class Request:
    """What a lane handler sees: the WSGI environ, the path's match, the body on demand."""

    __slots__ = ("environ", "match", "_body", "user_id")

    def __init__(self, environ: dict, match: re.Match) -> None:
        self.environ, self.match, self._body, self.user_id = environ, match, None, None

    def body(self) -> bytes | None:
        """The whole body, or None when Django must judge it (no or oversized Content-Length).
        Read once; the environ's input is replaced by a copy, so Django can still read it."""
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or "")
            except ValueError:
                return None
            if not 0 <= length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                return None
            self._body = self.environ["wsgi.input"].read(length)
            self.environ["wsgi.input"] = io.BytesIO(self._body)
        return self._body

    def token_user(self):
        """The user of a valid `Authorization: Token <key>` header, else None (Django answers 401).
        As token_required: a write is counted against the token's rate (`RateLimited`)."""
        user = token_user(self.environ.get("HTTP_AUTHORIZATION", ""), self.environ["REQUEST_METHOD"])
        self.user_id = getattr(user, "pk", None)  # for the access line
        return user


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    route: str  # the Django route, the label of the connection-hold metric
    aliases: tuple[str, ...]  # the databases the handler may use
    handler: Callable[[Request], Answer | None]  # None: Django takes it (only before any write)


_ROUTES: list[Route] = []


def register(route: Route) -> None:
    """Add a route to the lane; apps call it from AppConfig.ready() (market: transfers, users:
    the user read). The lane itself knows no app."""
    if route not in _ROUTES:
        _ROUTES.append(route)


def registered() -> tuple[Route, ...]:
    return tuple(_ROUTES)


_JSON = ("Content-Type", "application/json")
_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}  # HTTPStatus(n) costs an enum lookup
_ENCODER = DjangoJSONEncoder()  # what JsonResponse encodes with; stateless, shared by the threads


class Lane:
    def __init__(self, routes: tuple[Route, ...] | None = None) -> None:
        self.routes = registered() if routes is None else routes
        self.prefixes = tuple({r.pattern.pattern.split("(", 1)[0].removesuffix("\\Z") for r in self.routes})
        self._hosts: dict[str, bool] = {}
        self._security: dict[bool, list[tuple[str, str]]] = {}
        self._redirect = settings.SECURE_SSL_REDIRECT
        self._proxy_ssl = settings.SECURE_PROXY_SSL_HEADER
        self._forwarded_host = settings.USE_X_FORWARDED_HOST

    def __call__(self, environ, start_response):
        """The answer as a WSGI iterable, or None: Django takes the request."""
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefixes):
            return None
        method = environ.get("REQUEST_METHOD")
        for route in self.routes:
            if method == route.method:
                match = route.pattern.match(path)
                if match is not None:
                    break
        else:
            return None
        if any(replicas.has_replica(alias) for alias in route.aliases) or not self._host_allowed(environ):
            return None
        secure = self._is_secure(environ)
        if self._redirect and not secure:
            return None
        request_id = requestid.of(environ)
        if requestid.current() == request_id:  # bound by the WSGI entry point (config/wsgi.py) already
            return self._serve(route, Request(environ, match), path, secure, request_id, start_response)
        with requestid.bound(request_id):
            return self._serve(route, Request(environ, match), path, secure, request_id, start_response)

    def _serve(self, route: Route, request: Request, path: str, secure: bool, request_id: str, start_response):
        started = metrics.request_started()
        try:
            answer = route.handler(request)
        except Exception as exc:
            response = response_for_database_error(exc)  # ApiError or a database fault, as the middleware
            if response is None:  # a bug
                if route.method == "GET":
                    return None  # Django runs the read again and answers it its way (500, logged)
                log.exception("unexpected error in the fast lane: %s", path)  # a write never runs twice
                # as config.httpkit.errors.server_error
                response = error_response(500, "internal_error", "unexpected error")
            status, content = response.status_code, response.content
            headers = [*response.items(), *self._security_headers(secure), ("Content-Length", str(len(content)))]
            headers.append((requestid.HEADER, request_id))
            databases = metrics.record_request(path, status, route.route, started, response=response)
        else:
            if answer is None:
                return None
            status, body, extra = answer
            content = _ENCODER.encode(body).encode()  # as JsonResponse
            headers = [_JSON, *extra.items(), *self._security_headers(secure), ("Content-Length", str(len(content)))]
            headers.append((requestid.HEADER, request_id))
            databases = metrics.record_request(path, status, route.route, started)
        finally:
            for alias in route.aliases:
                connections[alias].close()  # back to the pool, as Django's request_finished would
        log_access(route.method, path, status, started, request.user_id, databases)
        status_line = _STATUS_LINES[status]
        if status >= 400:  # as django.utils.log.log_response
            reason = status_line.split(" ", 1)[1]
            (log.error if status >= 500 else log.warning)("%s: %s", reason, path, extra={"status_code": status})
        start_response(status_line, headers)
        return [content]

    # -- what the middleware would have checked or added --------------------
    def _host_allowed(self, environ) -> bool:
        if self._forwarded_host and "HTTP_X_FORWARDED_HOST" in environ:
            host = environ["HTTP_X_FORWARDED_HOST"]
        elif "HTTP_HOST" in environ:
            host = environ["HTTP_HOST"]
        else:
            return False  # rare (HTTP/1.0 without Host): Django's full rules apply
        known = self._hosts.get(host)
        if known is None:
            allowed = settings.ALLOWED_HOSTS
            if settings.DEBUG and not allowed:
                allowed = [".localhost", "127.0.0.1", "[::1]"]
            domain, _port = split_domain_port(host)
            known = bool(domain) and validate_host(domain, allowed)
            if len(self._hosts) > 256:  # forged hosts cannot grow it without bound
                self._hosts.clear()
            self._hosts[host] = known
        return known

    def _is_secure(self, environ) -> bool:
        """HttpRequest.scheme == "https", by Django's rules."""
        if self._proxy_ssl:
            header, secure_value = self._proxy_ssl
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def _security_headers(self, secure: bool) -> list[tuple[str, str]]:
        headers = self._security.get(secure)
        if headers is None:
            headers = self._security[secure] = security_headers(secure)
        return headers


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers SecurityMiddleware adds to an answer, found by running it once."""
    request = HttpRequest()
    request.is_secure = lambda: secure
    response = SecurityMiddleware(lambda r: HttpResponse()).process_response(request, HttpResponse())
    return [(k, v) for k, v in response.items() if k != "Content-Type"]
