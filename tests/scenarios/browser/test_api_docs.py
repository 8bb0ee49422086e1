"""/api/docs in a real headless Chromium: the page renders every operation of
/api/openapi.json from assets the server itself serves (no CDN: nothing leaves 127.0.0.1)."""

import json
from urllib.parse import urlparse

import pytest

from tests.support.servers import Gunicorn, cluster_env, http, test_database_urls

pytestmark = pytest.mark.browser


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_the_docs_page_renders_every_operation_offline(browser):
    with Gunicorn(cluster_env(test_database_urls()), workers=1, threads=4).running() as server:
        status, document, _ = http("GET", server.url("/api/openapi.json"))
        assert status == 200
        operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}

        outside, failed = [], []
        page = browser.new_page()

        def offline(route):
            if urlparse(route.request.url).hostname != "127.0.0.1":
                outside.append(route.request.url)
                return route.abort()
            return route.continue_()

        page.route("**/*", offline)
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.goto(server.url("/api/docs"))
        page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=30_000)
        shown = page.eval_on_selector_all(
            ".opblock-summary",
            "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent,"
            " e.querySelector('.opblock-summary-path').getAttribute('data-path')])",
        )
        assert {(m.strip().upper(), p) for m, p in shown} == operations, json.dumps(shown)
        assert page.title() == document["info"]["title"]
        assert outside == [] and failed == []  # every asset came from the server, none from a CDN
