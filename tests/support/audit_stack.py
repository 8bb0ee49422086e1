"""A throwaway stack for the audit's fault tests: the shared database alone in
its own cluster (so it can be stopped), every domain database in a second one. It is
migrated once per session (fixtures in tests/scenarios/faults/conftest.py); each test
starts with empty outboxes and trail.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from tests.support.pgcluster import PgCluster
from tests.support.project import ROOT
from tests.support.servers import cluster_env, migrate
from tests.support.topology import DOMAIN_ALIASES, PREFIX, SHARED_PREFIX

# The cluster trusts everyone; the password is there to prove it never reaches a log line.
SHARED_PASSWORD = "audit-pw-never-printed"


@dataclass
class Stack:
    shared: PgCluster
    domain: PgCluster
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def sql(self, db: str, query: str, params=None):
        cluster = self.shared if db == "shared" else self.domain
        return cluster.execute(query, params, dbname=db)

    def manage(self, *args: str, timeout: float = 120, check: bool = True, **env) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def popen(self, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """Processes a failed test left running (a relay with --follow) must not outlive it."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        self.procs.clear()

    def shell(self, code: str, **kwargs) -> subprocess.CompletedProcess:
        return self.manage("shell", "--no-imports", "-c", code, **kwargs)

    def audit_rows(self, where: str = "TRUE") -> list[tuple]:
        return self.sql(
            "shared",
            f"SELECT id, action, model, object_pk, actor, actor_id, changes, database "
            f"FROM audit_auditevent WHERE {where} ORDER BY occurred_at, id",
        )

    def outbox_ids(self) -> set:
        ids = set()
        for db in DOMAIN_ALIASES:
            ids |= {r[0] for r in self.sql(db, f"SELECT event_id FROM {db}_auditoutbox")}
        return ids

    def pending_outbox(self, db: str, n: int, *, model: str = "market.product") -> set:
        """Insert `n` outbox rows straight into `db` (as many writes would have); returns their event ids."""
        table = f"{db}_auditoutbox"
        rows = self.sql(
            db,
            f"INSERT INTO {table} (event_id, occurred_at, actor, action, model, object_pk, changes) "
            f"SELECT gen_random_uuid(), now() + g * interval '1 microsecond', 'test', 'create', "
            f"%s, g::text, '{{}}' FROM generate_series(1, %s) g RETURNING event_id",
            (model, n),
        )
        return {r[0] for r in rows}


def audit_stack():
    """The stack, up for as long as the generator is (databases named after their aliases,
    `shared` for the shared one)."""
    shared = PgCluster("audit-shared").start()
    domain = PgCluster("audit-domain").start()
    try:
        shared.create_database("shared")
        urls = {SHARED_PREFIX: shared.url("shared", password=SHARED_PASSWORD)}
        for alias in DOMAIN_ALIASES:
            domain.create_database(alias)
            urls[PREFIX[alias]] = domain.url(alias)
        env = cluster_env(
            urls,
            SHARED_DATABASE_CONNECT_TIMEOUT="1",
            DATABASE_BREAKER_OPEN_SECONDS="0.5",
        )
        migrate(env)
        yield Stack(shared, domain, env)
    finally:
        domain.destroy()
        shared.destroy()


def clean(s: Stack):
    """`s` running, with empty audit tables and outboxes, for as long as the generator is."""
    if not s.shared.is_ready():
        s.shared.start()
    s.sql("shared", "TRUNCATE audit_auditevent")
    for db in DOMAIN_ALIASES:
        tables = [
            r[0]
            for r in s.sql(
                db,
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'django_migrations'",
            )
        ]
        s.sql(db, f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    yield s
    s.kill_all()
