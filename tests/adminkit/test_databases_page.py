"""The admin's Databases page (config/adminkit/databases.py): who may open it, what it shows for
every alias and database, that its figures are those of /metrics and `dbstat`, and, against a live
gunicorn whose market database lives in a cluster of its own, that it still answers when that
database is stopped or frozen, showing market unavailable and the others with their numbers; and a
streaming replica's lag."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.parse
import urllib.request
import uuid
from io import StringIO

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.support.factories import UserFactory, make_post
from tests.support.faults import HTTP_TIMEOUT_S, manage_out, site
from tests.support.perms import grant
from tests.support.pgcluster import PgCluster, wait_for
from tests.support.scale import DATABASES, fresh_databases
from tests.support.servers import Gunicorn, cluster_env
from tests.support.topology import others

URL = "/admin/databases/"
ALL = ["default", "blog", "market"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(f"root-{uuid.uuid4().hex[:6]}", "root@example.com", "pw")


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True)


# -- who may open it --------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("fmt", ["", "?format=json", "?format=fragment"])
def test_staff_without_the_permission_get_403(staff, fmt):
    assert client_for(staff).get(URL + fmt).status_code == 403


@pytest.mark.django_db(databases=ALL)
def test_staff_with_the_permission_and_superusers_open_it(staff, superuser):
    grant(staff, "adminkit.view_databases")
    for user in (staff, superuser):
        response = client_for(user).get(URL)
        assert response.status_code == 200
        html = response.content.decode()
        assert "<h1>Databases</h1>" in html and 'id="dbpage-aliases"' in html
        assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db(databases=ALL)
def test_the_permission_alone_is_not_enough_without_staff_status(db):
    user = UserFactory()
    grant(user, "adminkit.view_databases")
    response = client_for(user).get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.django_db(databases=ALL)
def test_the_index_links_the_page_for_those_who_may_open_it(staff, superuser):
    assert f'href="{URL}"' in client_for(superuser).get("/admin/").content.decode()
    assert f'href="{URL}"' not in client_for(staff).get("/admin/").content.decode()
    grant(staff, "adminkit.view_databases")
    assert f'href="{URL}"' in client_for(get_user_model().objects.get(pk=staff.pk)).get("/admin/").content.decode()


# -- what it shows ----------------------------------------------------------------------------------


@pytest.mark.django_db(databases=ALL)
def test_every_alias_shows_its_pool_breaker_and_budget_and_every_database_its_connections(superuser):
    sd = connections["blog"].settings_dict
    label = f"dbpage-test-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(
        host=sd["HOST"], port=sd["PORT"], user=sd["USER"], dbname=sd["NAME"], application_name=label, autocommit=True
    ):
        data = client_for(superuser).get(URL + "?format=json").json()

    assert [a["alias"] for a in data["aliases"]] == list(settings.DATABASES)
    assert data["unavailable"] == []
    for a in data["aliases"]:
        assert a["available"], a
        pool = settings.DATABASES[a["alias"]]["OPTIONS"]["pool"]
        assert a["pool"]["max_size"] == pool["max_size"], a
        assert a["pool"]["in_use"] == a["pool"]["size"] - a["pool"]["available"]
        assert a["breaker"]["state"] == "closed" and a["breaker"]["since"] is None
        assert a["budget"] > 0
    outboxes = {a["alias"]: a["outbox"] for a in data["aliases"] if a["outbox"] is not None}
    assert set(outboxes) == {"blog", "market"}  # the domain databases carry an outbox, the shared one none

    by_name = {d["database"]: d for d in data["databases"]}
    for alias in ALL:
        entry = by_name[connections[alias].settings_dict["NAME"]]
        assert entry["available"] and alias in entry["aliases"] and entry["budget"] > 0
        assert entry["connections"] == sum(row["count"] for row in entry["by"])
    blog = by_name[sd["NAME"]]["by"]
    assert {"application_name": label, "state": "idle", "count": 1} in blog
    assert all(s["connections"] is not None and s["slots"] for s in data["servers"])


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics answer."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def assert_same_as_metrics(data: dict, scraped: str) -> None:
    """The page's pool, breaker and connection-hold figures are /metrics' (requests to the page and
    to /metrics end between the two readings: their own holds are left out)."""
    samples = metric_samples(scraped)
    for a in data["aliases"]:
        labels = (("alias", a["alias"]),)
        assert a["pool"]["max_size"] == samples[("platform_db_pool_max_size", labels)]
        assert a["pool"]["timeouts_total"] == samples[("platform_db_pool_timeouts_total", labels)]
        assert a["pool"]["requests_total"] <= samples[("platform_db_pool_requests_total", labels)]
        assert (a["breaker"]["state"] == "open") == bool(samples[("platform_db_breaker_state", labels)])
    for h in data["holders"]:
        if h["route"] in ("admin/databases/", "metrics"):
            continue
        labels = (("alias", h["alias"]), ("route", h["route"]))
        assert h["requests"] == samples[("platform_db_connection_hold_seconds_count", labels)], h
        assert h["total_s"] == round(samples[("platform_db_connection_hold_seconds_sum", labels)], 3), h


@pytest.mark.django_db(databases=ALL)
def test_budgets_are_dbstats_and_pool_figures_are_those_of_metrics(superuser):
    client = client_for(superuser)
    data = client.get(URL + "?format=json").json()
    scraped = client.get("/metrics").content.decode()

    out = StringIO()
    call_command("dbstat", "--json", stdout=out)
    dbstat = {d["database"]: d["budget"] for d in json.loads(out.getvalue())["databases"]}
    assert {d["database"]: d["budget"] for d in data["databases"]} == dbstat
    assert_same_as_metrics(data, scraped)


@override_settings(AUDIT_RELAY_ON_COMMIT=False)
@pytest.mark.django_db(databases=ALL, transaction=True)
def test_the_outbox_backlog_is_shown_per_domain_database(superuser):
    make_post(UserFactory(), title="Waiting in the outbox")  # no relay: the event stays in blog's outbox
    data = client_for(superuser).get(URL + "?format=json").json()
    outbox = {a["alias"]: a["outbox"] for a in data["aliases"] if a["outbox"] is not None}
    assert outbox["blog"]["depth"] == 1 and outbox["blog"]["oldest_age_s"] >= 0
    assert outbox["market"] == {"depth": 0, "oldest_age_s": None, "error": ""}


@pytest.mark.django_db(databases=ALL)
def test_the_chart_is_inline_svg_and_the_fragment_is_the_panel_alone(superuser):
    client = client_for(superuser)
    page = client.get(URL).content.decode()
    fragment = client.get(URL + "?format=fragment").content.decode()
    history = client.get(URL + "?format=json").json()["history"]

    assert '<svg id="dbpage-chart"' in page
    assert not re.search(r'(?:src|href|action)="(?:https?:)?//', page), "an asset from elsewhere"
    points = re.findall(r'<polyline data-alias="default" data-part="in_use"[^>]* points="([^"]*)"', fragment)
    assert points and points[0].strip(), "no line for default's pool"
    assert "<html" not in fragment and 'id="dbpage-aliases"' in fragment
    assert history["samples"] and set(history["aliases"]) >= set(ALL)
    assert all(set(s["in_use"]) == set(history["aliases"]) for s in history["samples"][-1:])


# -- against a live gunicorn, with the market database stopped and frozen -----------------------------


@pytest.fixture(scope="module")
def market_apart():
    yield from site({"main": others("MARKET"), "market": ("MARKET",)})


class Admin:
    """A browser-less admin session on a live server (cookies, CSRF, login form)."""

    def __init__(self, base: str, username: str, password: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        form = self.get("/admin/login/")[1]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        body = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
        ).encode()
        with self.opener.open(urllib.request.Request(base + "/admin/login/", data=body), timeout=HTTP_TIMEOUT_S) as r:
            assert r.url.endswith("/admin/"), "login failed"

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read().decode()

    def data(self) -> dict:
        status, body = self.get(URL + "?format=json")
        assert status == 200
        return json.loads(body)


@pytest.fixture(scope="module")
def operator(market_apart):
    password = uuid.uuid4().hex
    env = {**market_apart.env, "DJANGO_SUPERUSER_PASSWORD": password}
    manage_out(env, "createsuperuser", "--noinput", "--username", "operator", "--email", "ops@example.com")
    return Admin(market_apart.server.url("").rstrip("/"), "operator", password)


def _others_show_numbers(data: dict) -> None:
    for a in data["aliases"]:
        if a["base"] != "market":
            assert a["available"], a
            assert isinstance(a["pool"]["in_use"], int) and a["pool"]["max_size"] > 0
    for d in data["databases"]:
        if "market" not in d["aliases"]:
            assert d["available"] and d["connections"] >= 1, d


def _market_shown_unavailable(data: dict) -> None:
    market = {a["alias"]: a for a in data["aliases"] if a["base"] == "market"}
    assert market and all(not a["available"] and a["error"] for a in market.values()), market
    assert "market" in data["unavailable"] and "market_jobs" in data["unavailable"]
    assert market["market"]["outbox"]["error"], market["market"]["outbox"]
    [database] = [d for d in data["databases"] if "market" in d["aliases"]]
    assert not database["available"] and database["error"] and database["connections"] is None


@pytest.mark.cluster
def test_the_live_page_reads_what_metrics_shows(market_apart, operator):
    market_apart.wait_healthy()
    for _ in range(3):
        assert market_apart.blog()[0] == 200
    data = operator.data()
    status, scraped, _ = market_apart.get("/metrics")
    assert status == 200
    assert data["multiprocess"], "gunicorn runs prometheus_client in multiprocess mode"
    routes = {(h["route"], h["alias"]) for h in data["holders"]}
    assert ("api/blog/posts", "blog") in routes, data["holders"]
    assert_same_as_metrics(data, scraped)


@pytest.mark.cluster
def test_stopped_market_is_shown_unavailable_while_the_others_show_numbers(market_apart, operator):
    market_apart.wait_healthy()
    data = operator.data()
    assert data["unavailable"] == []
    _others_show_numbers(data)

    market_apart.clusters["market"].stop()
    try:
        data = operator.data()
        _market_shown_unavailable(data)
        _others_show_numbers(data)
        # The page and the panel its script fetches say so too.
        for path in (URL, URL + "?format=fragment"):
            status, html = operator.get(path)
            assert status == 200
            assert re.search(r'data-alias="market" data-available="false"', html)
            assert re.search(r'data-alias="blog" data-available="true"', html)
        # Requests for market open its breaker; the page shows it, and since when.
        wait_for(
            lambda: (
                market_apart.product()[0] == 503
                and next(a for a in operator.data()["aliases"] if a["alias"] == "market")["breaker"]["state"] == "open"
            ),
            timeout=30,
            what="market's breaker to show open",
        )
        market = next(a for a in operator.data()["aliases"] if a["alias"] == "market")
        assert market["breaker"]["since"] and market["breaker"]["opened_total"] >= 1
    finally:
        market_apart.clusters["market"].start()
    wait_for(lambda: operator.data()["unavailable"] == [], timeout=30, what="the page to show market again")


@pytest.mark.cluster
def test_frozen_market_does_not_hold_the_page(market_apart, operator):
    market_apart.wait_healthy()
    cluster = market_apart.clusters["market"]
    cluster.hang()
    try:
        data = operator.data()
        _market_shown_unavailable(data)
        _others_show_numbers(data)
        # libpq gives up on a connect after 2 s at the least: the page did not wait for it.
        [database] = [d for d in data["databases"] if "market" in d["aliases"]]
        assert database["error"].startswith("no answer within"), database
        # The next load may meet the first one's probes still out: it starts no second one, nor waits again.
        data = operator.data()
        _market_shown_unavailable(data)
        _others_show_numbers(data)
    finally:
        cluster.resume()
    wait_for(lambda: operator.data()["unavailable"] == [], timeout=30, what="the page to show market again")


# -- a replica's lag -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_replica():
    """A primary with the three databases, a streaming replica of it serving market's reads, gunicorn."""
    primary = PgCluster("dbpage-primary").start()
    replica = server = None
    try:
        urls = fresh_databases(primary)
        replica = primary.replica("dbpage-replica")
        env = cluster_env(urls, MARKET_DATABASE_REPLICA_URL=replica.url(DATABASES["MARKET"]))
        server = Gunicorn(env, workers=1, threads=4).start()
        password = uuid.uuid4().hex
        manage_out(
            {**env, "DJANGO_SUPERUSER_PASSWORD": password},
            "createsuperuser",
            "--noinput",
            "--username",
            "ops",
            "--email",
            "o@example.com",
        )
        yield primary, replica, Admin(server.url("").rstrip("/"), "ops", password)
    finally:
        if server is not None:
            server.stop()
        for cluster in (replica, primary):
            if cluster is not None:
                cluster.destroy()


@pytest.mark.cluster
def test_a_replicas_lag_is_shown_and_grows_while_its_replay_is_paused(with_replica):
    primary, replica, operator = with_replica

    def market_replica() -> dict:
        return next(a for a in operator.data()["aliases"] if a["alias"] == "market_replica")

    entry = wait_for(lambda: (e := market_replica())["replica"]["usable"] and e, what="the replica to be usable")
    assert entry["kind"] == "replica" and entry["available"] and entry["replica"]["lag_ms"] >= 0
    assert entry["server"] == f"127.0.0.1:{replica.port}"

    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        primary.execute(
            "INSERT INTO market_product (sku, name, price_cents, stock, created, updated)"
            " VALUES ('DBPAGE-LAG', 'x', 1, 1, now(), now())",
            dbname=DATABASES["MARKET"],
        )
        lagging = wait_for(
            lambda: (e := market_replica())["replica"]["reason"].startswith("lagging") and e,
            what="the page to show the replica lagging",
        )
        assert lagging["replica"]["usable"] is False and lagging["replica"]["lag_ms"] > 0
        assert lagging["available"]  # it answers; its reads go to the primary meanwhile
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: market_replica()["replica"]["usable"], what="the replica to be usable again")
