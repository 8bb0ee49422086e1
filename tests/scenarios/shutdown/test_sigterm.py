"""SIGTERM under load: in-flight requests finish with 200, every pool is closed,
gunicorn exits 0, and no connection or open transaction stays behind."""

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth import get_user_model

from tests.support.ops import activity, connect, uses_test_databases
from tests.support.pgcluster import wait_for
from tests.support.servers import http

BLOCKED = 3


@uses_test_databases
def test_sigterm_under_load_finishes_in_flight_requests_and_leaves_no_connection(ops_env, ops_urls, serve):
    user = get_user_model().objects.create_user("sigterm-user", "sigterm@example.com", "x")
    env = {
        **ops_env,
        "SHARED_DATABASE_STATEMENT_TIMEOUT_MS": "60000",
        "SHARED_DATABASE_POOL_MAX_SIZE": "8",
        "WEB_GRACEFUL_TIMEOUT": "30",
    }
    server = serve(env, workers=2, threads=4)
    assert http("GET", server.url("/readyz"))[0] == 200

    # Requests that are certainly in flight at SIGTERM: they wait on a table lock, holding a pooled connection.
    locker = connect(ops_urls["SHARED"], autocommit=False)
    locker.execute("LOCK TABLE auth_user IN ACCESS EXCLUSIVE MODE")
    requests = ThreadPoolExecutor(BLOCKED)
    blocked = [requests.submit(http, "GET", server.url(f"/api/users/{user.pk}"), timeout=60) for _ in range(BLOCKED)]

    # And steady load on /readyz from other clients.
    stop_load = threading.Event()
    outcomes: list = []

    def load():
        while not stop_load.is_set():
            try:
                outcomes.append(http("GET", server.url("/readyz"), timeout=30)[0])
            except OSError as exc:  # refused or reset once the server stops accepting: acceptable
                outcomes.append(type(exc).__name__)

    loaders = [threading.Thread(target=load) for _ in range(3)]
    try:
        for t in loaders:
            t.start()
        wait_for(
            lambda: (
                len([r for r in activity(ops_urls["SHARED"], "web:default") if r["wait_event_type"] == "Lock"])
                == BLOCKED
            ),
            what="requests waiting on the lock",
        )
        wait_for(lambda: 200 in outcomes, what="load to be served")
        server.proc.send_signal(signal.SIGTERM)

        def stopped_accepting():  # a new request is no longer picked up
            try:
                http("GET", server.url("/healthz"), timeout=1)
                return False
            except OSError:
                return True

        wait_for(stopped_accepting, timeout=30, what="gunicorn to stop accepting")
        assert not any(f.done() for f in blocked), "in-flight requests ended before the lock was released"
    finally:
        locker.commit()
        locker.close()
        stop_load.set()
        for t in loaders:
            t.join(60)

    answers = [f.result() for f in blocked]
    assert [(status, body["data"]["username"]) for status, body, _ in answers] == [(200, "sigterm-user")] * BLOCKED
    assert server.proc.wait(60) == 0, server.output()
    served = [o for o in outcomes if isinstance(o, int)]
    assert served and set(served) == {200}, outcomes

    def left_behind():
        return [
            r
            for url in ops_urls.values()
            for r in activity(url)
            if r["application_name"].startswith("web:") or (r["state"] or "").startswith("idle in transaction")
        ]

    wait_for(lambda: left_behind() == [], timeout=10, what="web connections and open transactions to go away")
