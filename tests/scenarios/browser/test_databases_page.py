"""The admin's Databases page in a real headless Chromium against a live gunicorn: reached from the
admin index, a row per alias, the chart drawn, and the page refreshing itself with new figures
(a connection opened after the page loaded shows up, without a reload)."""

import os
import uuid

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connections

from tests.support.servers import Gunicorn, cluster_env, test_database_urls

pytestmark = pytest.mark.browser


@pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)
def test_databases_page_shows_every_alias_a_chart_and_refreshes_itself(browser):
    password = uuid.uuid4().hex
    # The server runs production settings: hash with their hasher, not the tests' fast one.
    get_user_model().objects.create_superuser("operator", "ops@example.com", password="x")
    get_user_model().objects.filter(username="operator").update(
        password=make_password(password, hasher="pbkdf2_sha256")
    )
    label = f"browser-{uuid.uuid4().hex[:8]}"
    sd = connections["blog"].settings_dict

    with Gunicorn(cluster_env(test_database_urls()), workers=1, threads=4).running() as server:
        page = browser.new_page()
        page.goto(server.url("/admin/login/"))
        page.fill("#id_username", "operator")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.click("text=Databases")  # the index links the page
        page.wait_for_selector("#dbpage-aliases")
        assert page.url == server.url("/admin/databases/")

        rows = page.eval_on_selector_all(
            "#dbpage-aliases tbody tr", "rows => rows.map(r => [r.dataset.alias, r.dataset.available])"
        )
        assert rows == [[alias, "true"] for alias in settings.DATABASES]
        for alias in ("default", "blog", "market"):
            size = page.text_content(f'#dbpage-aliases tr[data-alias="{alias}"] td[data-field="max_size"]')
            assert int(size) == settings.DATABASES[alias]["OPTIONS"]["pool"]["max_size"]
        points = page.get_attribute('#dbpage-chart polyline[data-alias="default"][data-part="in_use"]', "points")
        assert points and len(points.split()) >= 1
        box = page.locator("#dbpage-chart").bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50  # drawn, not an empty element

        # A new connection to blog, made after the page loaded, appears at the next refresh.
        page.evaluate("window.__notReloaded = true")
        first = page.get_attribute("#dbpage-generated", "data-generated-at")
        assert page.locator(f'tr[data-application-name="{label}"]').count() == 0
        with psycopg.connect(
            host=sd["HOST"], port=sd["PORT"], user=sd["USER"], dbname=sd["NAME"], application_name=label
        ):
            page.wait_for_selector(f'.dbpage-database tr[data-application-name="{label}"]', timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True
        assert page.get_attribute("#dbpage-generated", "data-generated-at") != first
        samples = int(page.get_attribute("#dbpage-chart", "data-samples"))
        assert samples >= 2  # the chart grew a point
        if os.environ.get("DBPAGE_SCREENSHOT"):
            page.screenshot(path=os.environ["DBPAGE_SCREENSHOT"], full_page=True)
