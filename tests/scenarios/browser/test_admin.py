"""The admin in a real headless Chromium: each object lands in its own database,
and the admin log entry in `default`."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connections

from market.models import Account
from tests.support.servers import Gunicorn, cluster_env, test_database_urls

pytestmark = pytest.mark.browser


def rows(alias, sql, params=()):
    with connections[alias].cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


@pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)
def test_admin_saves_each_object_in_its_own_database(browser):
    password = uuid.uuid4().hex
    # The server runs production settings: hash with their hasher, not the tests' fast one.
    get_user_model().objects.create_superuser("chief", "chief@example.com", password="x")
    get_user_model().objects.filter(username="chief").update(password=make_password(password, hasher="pbkdf2_sha256"))
    title = f"Browser post {uuid.uuid4().hex[:6]}"
    sku = f"BRW-{uuid.uuid4().hex[:6].upper()}"

    with Gunicorn(cluster_env(test_database_urls()), workers=1, threads=4).running() as server:
        page = browser.new_page()
        page.goto(server.url("/admin/login/"))
        page.fill("#id_username", "chief")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")

        page.goto(server.url("/admin/blog/post/add/"))
        page.fill("#id_title", title)
        page.fill("#id_body", "Written in a real browser.")
        page.select_option("#id_status", "published")
        assert page.input_value("#id_author") == "chief"  # proposed: the user writing
        page.click("input[name=_save]")
        page.wait_for_selector("ul.messagelist li.success")

        page.goto(server.url("/admin/market/product/add/"))
        page.fill("#id_sku", sku)
        page.fill("#id_name", "Made in a browser")
        page.fill("#id_price_cents", "19.99")  # currency, stored as cents
        page.fill("#id_stock", "7")
        page.click("input[name=_save]")
        page.wait_for_selector("ul.messagelist li.success")

        # Money as money, people by name: the lists show 19.99 and the author's username
        # (from the shared database), and a search by username finds rows across databases.
        page.goto(server.url(f"/admin/market/product/?q={sku}"))
        assert "19.99" in page.inner_text("#result_list")
        page.goto(server.url("/admin/blog/post/"))
        assert "chief" in page.inner_text("#result_list")
        chief = get_user_model().objects.get(username="chief")
        account = Account.objects.create(owner_id=chief.pk, balance_cents=123456)
        page.goto(server.url("/admin/market/account/?q=chie"))
        listed = page.inner_text("#result_list")
        assert "chief" in listed and "1,234.56" in listed and str(account.pk) in listed

    # Each row in its own database, and only there.
    assert rows("blog", "SELECT status FROM blog_post WHERE title = %s", [title]) == [("published",)]
    assert rows("market", "SELECT name, price_cents, stock FROM market_product WHERE sku = %s", [sku]) == [
        ("Made in a browser", 1999, 7)
    ]
    for alias in ("default", "market"):
        assert not rows(alias, "SELECT 1 FROM pg_tables WHERE tablename = 'blog_post'")
    for alias in ("default", "blog"):
        assert not rows(alias, "SELECT 1 FROM pg_tables WHERE tablename = 'market_product'")
    # The admin log lives in the shared database.
    log = rows("default", "SELECT object_repr, action_flag FROM django_admin_log ORDER BY id")
    assert (title, 1) in log and any(sku in r[0] for r in log)
    for alias in ("blog", "market"):
        assert not rows(alias, "SELECT 1 FROM pg_tables WHERE tablename = 'django_admin_log'")
