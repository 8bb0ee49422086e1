"""The fast lane: plain WSGI routes in front of Django for the hottest read endpoints.

Django's request path (request object, URL resolving, signals, middleware,
response object) costs several times the query it serves on a by-id read
(bench/profile.md). For the routes in `ROUTES`, `config/wsgi.py` calls the
lane first; the lane answers only the requests it fully understands and
returns None for everything else, which Django then answers exactly as before.

What the lane keeps from the middleware stack, so a client cannot tell:
- ALLOWED_HOSTS (a host Django would refuse falls through, and Django answers 400);
- SecurityMiddleware's headers, computed once by running SecurityMiddleware
  itself (an insecure request under SECURE_SSL_REDIRECT falls through);
- request metrics: requests and latency by domain, connection hold per route
  and alias (config/metrics.py);
- the database through Django's connection of the alias: pool, breaker,
  bulkhead, statement deadline, the alias on every error; a database fault is
  the same `503 database_unavailable` naming the database;
- the view's selector (one source for the SQL and the JSON shape).
Read routing is the one thing it does not do: while the alias has a replica,
requests fall through to Django (replica choice, read-your-writes cookie).

tests/config/test_fastlane.py compares the lane's answers with Django's, byte for byte.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Callable

from django.conf import settings
from django.db import connections
from django.http.request import split_domain_port, validate_host

from config import metrics, replicas
from config.http import response_for_database_error

log = logging.getLogger("django.request")  # where Django logs 4xx/5xx answers

Answer = tuple[int, dict]  # (status, JSON body)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    route: str  # the Django route, the label of the connection-hold metric
    alias: str  # the database the handler reads
    handler: Callable[[re.Match], Answer]


def _user_detail(match: re.Match) -> Answer:
    from config.users import user_get_public

    user_id = int(match.group(1))
    row = user_get_public(user_id=user_id)
    if row is None:
        return 404, {"error": {"code": "user_not_found", "message": f"no user with id {user_id}"}}
    return 200, {"data": row}


ROUTES: tuple[Route, ...] = (
    Route("GET", re.compile(r"/api/users/([0-9]+)\Z"), "api/users/<int:user_id>", "default", _user_detail),
)

_REASONS = {200: "200 OK", 404: "404 Not Found"}
_JSON = ("Content-Type", "application/json")


class Lane:
    def __init__(self) -> None:
        self.routes = ROUTES
        self.prefixes = tuple({r.pattern.pattern.split("(", 1)[0] for r in ROUTES})
        self._hosts: dict[str, bool] = {}
        self._security: dict[bool, list[tuple[str, str]]] = {}
        self._redirect = settings.SECURE_SSL_REDIRECT
        self._proxy_ssl = settings.SECURE_PROXY_SSL_HEADER
        self._forwarded_host = settings.USE_X_FORWARDED_HOST
        self._forwarded_port = settings.USE_X_FORWARDED_PORT

    def __call__(self, environ, start_response):
        """The answer as a WSGI iterable, or None: Django takes the request."""
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.prefixes):
            return None
        for route in self.routes:
            if environ.get("REQUEST_METHOD") == route.method:
                match = route.pattern.match(path)
                if match is not None:
                    break
        else:
            return None
        if replicas.has_replica(route.alias) or not self._host_allowed(environ):
            return None
        secure = self._is_secure(environ)
        if self._redirect and not secure:
            return None
        return self._serve(route, match, path, secure, start_response)

    def _serve(self, route: Route, match: re.Match, path: str, secure: bool, start_response):
        started = metrics.request_started()
        connection = connections[route.alias]
        try:
            status, body = route.handler(match)
        except Exception as exc:
            response = response_for_database_error(exc)
            if response is None:  # a bug: Django runs the view again and answers it its way (500, logged)
                return None
            return self._send_django(route, path, secure, response, started, start_response)
        finally:
            connection.close()  # back to the pool, as Django's request_finished would
        data = json.dumps(body).encode()
        if status >= 400:
            log.warning("%s: %s", _REASONS[status].split(" ", 1)[1], path, extra={"status_code": status})
        metrics.record_request(path, status, route.route, started)
        start_response(_REASONS[status], [_JSON, *self._security_headers(secure), ("Content-Length", str(len(data)))])
        return [data]

    def _send_django(self, route, path, secure, response, started, start_response):
        """An error answer built by the same helpers Django's path uses (config/http.py)."""
        metrics.record_request(path, response.status_code, route.route, started, response=response)
        log.error("%s: %s", response.reason_phrase, path, extra={"status_code": response.status_code})
        headers = [*response.items(), *self._security_headers(secure), ("Content-Length", str(len(response.content)))]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return [response.content]

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
    from django.http import HttpRequest, HttpResponse
    from django.middleware.security import SecurityMiddleware

    request = HttpRequest()
    request.is_secure = lambda: secure
    response = SecurityMiddleware(lambda r: HttpResponse()).process_response(request, HttpResponse())
    return [(k, v) for k, v in response.items() if k != "Content-Type"]
