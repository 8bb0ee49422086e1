"""The home page and the error pages a browser sees: HTML outside the API, JSON on the API's paths
and for clients that ask for it; a Host outside DJANGO_ALLOWED_HOSTS says so on every path."""

import pytest
from django.test import Client

from tests.support.servers import Gunicorn, cluster_env, http, test_database_urls

LINKS = {
    "admin": "/admin/",
    "api_docs": "/api/docs",
    "openapi": "/api/openapi.json",
    "health": "/healthz",
    "readiness": "/readyz",
    "metrics": "/metrics",
}


def test_home_is_html_for_a_browser_linking_admin_api_docs_and_probes():
    response = Client().get("/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "Accept" in response["Vary"]
    html = response.content.decode()
    for href in LINKS.values():
        assert f'href="{href}"' in html


def test_home_is_json_when_asked_for_it():
    response = Client().get("/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"data": {"links": LINKS}}
    # No Accept header at all (curl's */*): the page.
    assert Client().get("/")["Content-Type"].startswith("text/html")


def test_home_refuses_other_methods():
    response = Client().delete("/", HTTP_ACCEPT="application/json")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_through_gunicorn_home_takes_the_full_stack_and_a_foreign_host_is_told_about_the_variable():
    with Gunicorn(cluster_env(test_database_urls()), workers=1, threads=2).running() as server:
        status, body, headers = http("GET", server.url("/"), headers={"Accept": "text/html"})
        assert status == 200 and "/admin/" in body
        assert headers.get("X-Frame-Options") == "DENY"  # a header only the full stack adds
        status, body, _ = http("GET", server.url("/"), headers={"Accept": "application/json"})
        assert status == 200 and body["data"]["links"] == LINKS

        foreign = {"Host": "evil.example", "Accept": "text/html"}
        # The full stack (Django's DisallowedHost), the API stack (AllowedHostsMiddleware), and the
        # fast lane's route (/api/users/<id>, which leaves a foreign host to Django) agree.
        for path in ("/", "/admin/login/"):
            status, body, headers = http("GET", server.url(path), headers=foreign)
            assert status == 400 and headers["Content-Type"].startswith("text/html"), (path, body)
            assert "DJANGO_ALLOWED_HOSTS" in body and "127.0.0.1" not in body, body
        for path in ("/api/users/1", "/api/blog/posts", "/healthz"):
            status, body, _ = http("GET", server.url(path), headers=foreign)
            assert status == 400, (path, body)
            assert body["error"]["code"] == "invalid_request" and body["error"]["field"] == "Host"
            assert "DJANGO_ALLOWED_HOSTS" in body["error"]["message"] and "127.0.0.1" not in body["error"]["message"]
        out = server.output()
    refused = [line for line in out.splitlines() if "not in DJANGO_ALLOWED_HOSTS" in line]
    assert len(refused) == 5, out
    assert all("'evil.example'" in line for line in refused)
    assert "Traceback" not in out and "DisallowedHost" not in out  # one line each, no stack
