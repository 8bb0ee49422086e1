"""Nothing lost, nothing doubled: the outbox and relay under real faults.

The shared database runs alone in a throwaway cluster, so it can be stopped
while commands write to blog and market; relays are real processes, killed with
SIGKILL at the worst moment and run side by side.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.support.audit_stack import SHARED_PASSWORD
from tests.support.pgcluster import wait_for

pytestmark = pytest.mark.cluster

WRITES = """
from blog.models import Post
from market.models import Product
p = Product.objects.create(sku="down-1", name="One", price_cents=100, stock=3)
p.stock = 2
p.save(update_fields=["stock"])
gone = Product.objects.create(sku="down-2", name="Two", price_cents=200, stock=1)
gone_pk = gone.pk
gone.delete()
post = Post.objects.create(title="Written while down", slug="written-while-down", body="b", author_id=1)
post.title = "Still down"
post.save()
print("wrote", p.pk, gone_pk, post.pk)
"""


def delivered(stack) -> int:
    return stack.sql("shared", "SELECT count(*) FROM audit_auditevent")[0][0]


def relay_backends_gone(stack) -> bool:
    """No connection of a relay is left in either cluster (a killed client's backend may linger a moment)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'jobs:%%'"
    return stack.sql("market", query)[0][0] == 0 and stack.sql("shared", query)[0][0] == 0


def reported(proc_output: str) -> int:
    return int(re.search(r"delivered (\d+) audit event", proc_output).group(1))


def test_a_commands_writes_are_delivered_by_the_command_itself(stack):
    result = stack.shell(WRITES)
    p_pk = result.stdout.split()[1]
    # No sweeper ran: the command's relay thread delivered before the process exited.
    assert stack.outbox_ids() == set()
    rows = stack.audit_rows()
    assert len(rows) == 6
    update = [r for r in rows if r[1] == "update" and r[2] == "market.product"]
    assert [(r[3], r[6]) for r in update] == [(p_pk, {"stock": {"old": 3, "new": 2}})]
    post_update = next(r for r in rows if r[1] == "update" and r[2] == "blog.post")
    assert post_update[6]["title"] == {"old": "Written while down", "new": "Still down"}


def test_writes_succeed_while_the_shared_database_is_down_and_arrive_once_later(stack):
    stack.shared.stop()
    result = stack.shell(WRITES)
    assert result.stdout.startswith("wrote")
    assert "audit relay for" in result.stderr  # the after-commit delivery failed, and said so
    assert SHARED_PASSWORD not in result.stderr + result.stdout
    p_pk, gone_pk, post_pk = result.stdout.split()[1:]
    pending = stack.outbox_ids()
    assert len(pending) == 6

    stack.shared.start()
    stack.manage("audit_relay")
    rows = stack.audit_rows()
    assert sorted(str(r[0]) for r in rows) == sorted(str(i) for i in pending)  # every event, each once
    assert stack.outbox_ids() == set()
    summary = sorted((r[2], r[1], r[3]) for r in rows)
    assert summary == sorted(
        [
            ("market.product", "create", p_pk),
            ("market.product", "update", p_pk),
            ("market.product", "create", gone_pk),
            ("market.product", "delete", gone_pk),
            ("blog.post", "create", post_pk),
            ("blog.post", "update", post_pk),
        ]
    )
    update = next(r for r in rows if r[1] == "update" and r[2] == "market.product")
    assert update[6] == {"stock": {"old": 3, "new": 2}}
    assert {r[4] for r in rows} == {rows[0][4]} and rows[0][4].startswith("cli:")
    assert {r[7] for r in rows} == {"market", "blog"}

    stack.manage("audit_relay")  # a second sweep changes nothing
    assert delivered(stack) == 6


def test_a_relay_killed_between_its_two_commits_loses_and_doubles_nothing(stack):
    pending = stack.pending_outbox("market", 300)
    # SHARE mode lets the relay lock rows (FOR UPDATE) and commit to the shared
    # database, but blocks its DELETE: the relay is caught between the commits.
    with stack.domain.connect("market") as blocker:
        with blocker.transaction():
            blocker.execute("LOCK TABLE market_auditoutbox IN SHARE MODE")
            relay = stack.popen("audit_relay", "--batch", "100")
            wait_for(lambda: delivered(stack) == 100, timeout=60, what="the first batch to reach the shared database")
            wait_for(
                lambda: (
                    stack.sql(
                        "market",
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                        "'Lock' AND application_name = 'jobs:market'",
                    )[0][0]
                    == 1
                ),
                what="the relay to wait on its DELETE",
            )
            relay.send_signal(signal.SIGKILL)
            relay.wait(30)
    wait_for(lambda: relay_backends_gone(stack), what="the killed relay's connections to go away")
    assert delivered(stack) == 100
    assert len(stack.outbox_ids()) == 300  # the 100 delivered rows were not deleted

    result = stack.manage("audit_relay", "--batch", "100")
    assert reported(result.stdout) == 300  # 100 of them again: ignored by ON CONFLICT
    assert {r[0] for r in stack.audit_rows()} == pending
    assert delivered(stack) == 300
    assert stack.outbox_ids() == set()


def test_a_relay_killed_mid_run_then_rerun_delivers_everything_once(stack):
    pending = stack.pending_outbox("market", 4000) | stack.pending_outbox("blog", 1000, model="blog.post")
    relay = stack.popen("audit_relay", "--follow", "--batch", "10", "--interval", "0.1")
    wait_for(lambda: delivered(stack) >= 500, timeout=120, interval=0.01, what="part of the backlog to be delivered")
    relay.send_signal(signal.SIGKILL)
    relay.wait(30)
    wait_for(lambda: relay_backends_gone(stack), what="the killed relay's connections to go away")
    assert delivered(stack) < len(pending)

    stack.manage("audit_relay", "--batch", "200")
    assert {r[0] for r in stack.audit_rows()} == pending
    assert delivered(stack) == len(pending)
    assert stack.outbox_ids() == set()


def test_two_relays_at_once_share_the_work_without_doubles(stack):
    pending = stack.pending_outbox("market", 3000) | stack.pending_outbox("blog", 1000, model="blog.post")
    relays = [stack.popen("audit_relay", "--batch", "20") for _ in range(2)]
    outputs = [r.communicate(timeout=180) for r in relays]
    assert [r.returncode for r in relays] == [0, 0], outputs
    # Each row was taken by exactly one relay: the counts add up, not more.
    assert sum(reported(out) for out, _ in outputs) == len(pending)
    assert {r[0] for r in stack.audit_rows()} == pending
    assert stack.outbox_ids() == set()


def test_follow_delivers_as_events_arrive_and_stops_cleanly_on_sigterm(stack):
    relay = stack.popen("audit_relay", "--follow", "--interval", "0.2")
    wait_for(
        lambda: (
            stack.sql("market", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobs:market'")[0][0]
            >= 1
        ),
        timeout=60,
        what="the sweeper to start",
    )
    pending = stack.pending_outbox("market", 50)
    wait_for(lambda: delivered(stack) == 50, timeout=30, what="the sweeper to deliver new events")
    relay.send_signal(signal.SIGTERM)
    out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert reported(out) == 50
    assert {r[0] for r in stack.audit_rows()} == pending


def test_the_sweeper_survives_an_outage_of_the_shared_database(stack, tmp_path):
    log = tmp_path / "relay.err"
    with open(log, "w") as err_file:
        relay = stack.popen("audit_relay", "--follow", "--interval", "0.2", stderr=err_file)
        try:
            stack.pending_outbox("market", 10)
            wait_for(lambda: delivered(stack) == 10, timeout=60, what="the first delivery")
            stack.shared.stop()
            pending = stack.pending_outbox("market", 20)
            wait_for(lambda: "audit relay sweep failed" in log.read_text(), timeout=30, what="a failed sweep")
            stack.shared.start()
            wait_for(lambda: delivered(stack) == 30, timeout=60, what="delivery after the outage")
            assert pending <= {r[0] for r in stack.audit_rows()}
            assert relay.poll() is None  # it kept running through the outage
        finally:
            relay.send_signal(signal.SIGTERM)
            out, _ = relay.communicate(timeout=30)
    assert relay.returncode == 0
    assert reported(out) == 30
    assert SHARED_PASSWORD not in log.read_text()
