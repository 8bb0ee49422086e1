"""The rows of `make bench-admin`, written with SQL only (INSERT ... SELECT FROM generate_series).

Every value of row i is a function of i (hashint8extended(i, seed)), never of random(): two sets
of different sizes hold the same first rows, the same users, tags and groups, so the page
list built from each set names the same filters and the same search terms.

Distributions: 3,000 users (a few staff, a few inactive, a third in one of 5 groups), API
tokens for a tenth of them; products with names of three words from small vocabularies (a
word matches 1/16 to 1/32 of them), 10% out of stock; orders of 1-3 lines (totals are the
sum of the lines), 5% cancelled; accounts with an owner (5% house accounts without one);
transfers between two distinct accounts; posts by every user, 0-3 tags each, 90% published;
audit events over 24 months, across both domain databases, 7 models, 5 actions, 30% without
an actor (jobs), the rest by every user in turn. Dates grow with the id, as they do in
production, over the 24 months before the fill.

The audit table may be partitioned by month (declarative partitioning): rows go through the
parent table either way; when it is partitioned, the monthly partitions of the 24 months
are created first (as time would have created them), so the rows do not all land in a
DEFAULT partition.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

# Bumped whenever the generated rows change: a reused set made by another version is refilled.
VERSION = 1
SPAN_DAYS = 730
CHUNK = 1_000_000  # rows per INSERT statement of the big tables (progress, bounded transactions)
DEFER_INDEXES_FROM = 200_000  # rows from which a table's indexes are dropped during the fill and built after

# Sizes of the full-size set (issue 17) and the 10k set. Users, groups and tags are the same in both.
BIG = {
    "users": 3000,
    "groups": 5,
    "axes_logins": 5000,
    "axes_failures": 1000,
    "axes_attempts": 60,
    "tags": 200,
    "products": 1_000_000,
    "orders": 1_000_000,
    "accounts": 1_000_000,
    "transfers": 1_000_000,
    "posts": 1_000_000,
    "audit_events": 10_000_000,
}
SMALL = {**BIG, **{k: 10_000 for k in ("products", "orders", "accounts", "transfers", "posts", "audit_events")}}
SCALED = ("products", "orders", "accounts", "transfers", "posts", "audit_events")


def sizes(kind: str, scale: float = 1.0) -> dict[str, int]:
    """The row counts of a set: `small`, or `big` with its domain tables multiplied by `scale`."""
    if kind == "small":
        return dict(SMALL)
    return {k: (max(10, round(v * scale)) if k in SCALED else v) for k, v in BIG.items()}


def h(expr: str, seed: int, mod: int | str) -> str:
    """SQL: a deterministic pseudo-random integer in [0, mod) from `expr`."""
    return f"mod(hashint8extended(({expr})::bigint, {seed}) & {2**63 - 1}, ({mod})::bigint)"


def pick(words: list[str], expr: str, seed: int) -> str:
    """SQL: one of `words`, chosen from `expr`."""
    array = "ARRAY[" + ",".join("'" + w.replace("'", "''") + "'" for w in words) + "]"
    return f"({array})[1 + {h(expr, seed, len(words))}]"


FIRST = (
    "Ada Alan Anna Ben Carla Chen David Elena Emma Farid Grace Hana Ivan Jana Jonas Karim Lea Lena Liam Lucia "
    "Marco Maria Mia Nadia Noah Olga Omar Paul Priya Rafael Sara Sofia Tariq Tom Uma Vera Wei Yara Yusuf Zoe"
).split()
LAST = (
    "Almeida Bauer Becker Chen Costa Dubois Evans Fischer Garcia Hansen Ivanova Jensen Kim Kowalski Larsen Lopez "
    "Martin Meyer Moreau Muller Nakamura Nguyen Novak Okafor Patel Petrov Rossi Santos Schmidt Silva Smith Suzuki "
    "Tanaka Weber Wilson Wagner Yilmaz Zhang Ziegler Olsen"
).split()
ADJECTIVES = (
    "red blue green black white small large light heavy classic modern compact deluxe basic smart quiet"
).split()
MATERIALS = "steel oak cotton glass bamboo copper leather wool ceramic carbon linen granite".split()
NOUNS = (
    "widget lamp chair table kettle backpack bottle jacket blanket speaker keyboard monitor notebook pencil "
    "helmet mug pillow shelf clock mirror drill hammer tent bucket wallet scarf glove brush basket candle stool rug"
).split()
TOPICS = (
    "postgres django python scaling caching indexes queues testing security deployment monitoring logging "
    "migrations replicas pooling partitions backups latency profiling observability"
).split()
VERBS = "tuning understanding debugging measuring designing operating shipping reviewing".split()
WORDS = (
    "the a fast slow simple careful small large every each query table index server request answer page "
    "memory disk network cache pool worker thread process lock row column plan cost time budget limit"
).split()
GROUPS = ["editors", "support", "finance", "operations", "auditors"]
# (database, model label, share of the events in percent, the table whose ids object_pk takes)
AUDITED = [
    ("market", "market.order", 20, "orders"),
    ("market", "market.orderline", 25, "orders"),
    ("market", "market.transfer", 20, "transfers"),
    ("market", "market.product", 15, "products"),
    ("market", "market.account", 8, "accounts"),
    ("blog", "blog.post", 10, "posts"),
    ("blog", "blog.tag", 2, "tags"),
]


def _chunks(n: int, chunk: int = CHUNK):
    lo = 1
    while lo <= n:
        hi = min(n, lo + chunk - 1)
        yield lo, hi
        lo = hi + 1


def _created(i: str, n: str) -> str:
    """SQL: a timestamp growing with the id over the SPAN_DAYS before %(end)s."""
    span = f"interval '{SPAN_DAYS} days'"
    return f"(%(end)s::timestamptz - {span} + (({i})::float8 / ({n})) * {span})"


class Stopped(Exception):
    pass


# Set by the bench when it stops (Ctrl-C): the statement running is cancelled, no other starts.
STOPPING = threading.Event()


class Filler:
    """Runs the statements of one database, reporting each step's rows and seconds."""

    def __init__(self, url: str, end: dt.datetime, say: Callable[[str], None], tag: str):
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="bench:admin-fill")
        self.conn.execute("SET synchronous_commit = off")
        self.conn.execute("SET statement_timeout = 0")
        self.conn.execute("SET maintenance_work_mem = '256MB'")
        self.end, self.say, self.tag = end, say, tag
        self.steps: dict[str, float] = {}

    def execute(self, statement, params=None):
        """Every statement of the fill: none starts once the run is stopping (Ctrl-C)."""
        if STOPPING.is_set():
            raise Stopped("the fill was stopped")
        return self.conn.execute(statement, params)

    def run(self, name: str, sql: str, n: int, *, table: str | None = None, **params) -> None:
        """`sql` over ids 1..n in chunks; with `table` and many rows, its indexes are built afterwards."""
        started = time.monotonic()
        deferred = self.drop_indexes(table) if table and n >= DEFER_INDEXES_FROM else []
        for lo, hi in _chunks(n):
            self.execute(sql, {"lo": lo, "hi": hi, "n": n, "end": self.end, **params})
            if n > CHUNK:
                self.say(f"{self.tag}: {name} {hi:,}/{n:,} ({time.monotonic() - started:.0f}s)")
        if deferred:
            indexing = time.monotonic()
            for statement in deferred:
                self.execute(statement)
            self.say(f"{self.tag}: {name}: {len(deferred)} indexes built in {time.monotonic() - indexing:.0f}s")
        self.steps[name] = round(time.monotonic() - started, 1)

    def drop_indexes(self, table: str) -> list[str]:
        """Drop the indexes of `table` (and the primary key and unique constraints no foreign key
        depends on); returns the statements that make them again, as the migrations declared them.
        Building an index once is several times faster than keeping it up to date row by row."""
        rows = self.execute(
            """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,
                      pg_get_constraintdef(c.oid),
                      (SELECT array_agg(format('ALTER INDEX %%s ALTER COLUMN %%s SET STATISTICS %%s',
                                               i.indexrelid::regclass, a.attnum, a.attstattarget))
                       FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget > 0)
               FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
               WHERE i.indrelid = %s::regclass
                 AND (c.oid IS NULL OR (c.contype IN ('p', 'u') AND NOT EXISTS (
                      SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = i.indrelid)))""",
            (table,),
        ).fetchall()
        again = []
        for index, definition, constraint, constraint_def, statistics in rows:
            if constraint:
                self.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
                again.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}" {constraint_def}')
            else:
                self.execute(f"DROP INDEX {index}")
                # A partitioned table's index is defined ON ONLY the parent; made again on every partition.
                again.append(definition.replace(" ON ONLY ", " ON ", 1))
                again.extend(statistics or ())  # the migrations' statistics targets (market 0004)
        return again

    def reset_sequence(self, table: str) -> None:
        self.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {table}), "
            "false)"
        )

    def vacuum(self, tables: list[str]) -> None:
        started = time.monotonic()
        for table in tables:
            self.execute(f"VACUUM (ANALYZE) {table}")
        self.steps["vacuum_analyze"] = round(time.monotonic() - started, 1)

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- shared database


def fill_shared(f: Filler, n: dict[str, int]) -> None:
    u = n["users"]
    f.run(
        "users",
        f"""INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff,
               is_active, date_joined)
        SELECT i, '!', false, lower(fn) || '.' || lower(ln) || i, fn, ln, lower(fn) || '.' || lower(ln) || i
               || '@example.com', mod(i, 50) = 0, mod(i, 33) <> 0, {_created("i", "%(n)s")}
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
             LATERAL (SELECT {pick(FIRST, "i", 1)} AS fn, {pick(LAST, "i", 2)} AS ln) names""",
        u,
    )
    f.reset_sequence("auth_user")
    f.execute(
        "INSERT INTO auth_group (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (GROUPS[: n["groups"]],),
    )
    f.run(
        "user_groups",
        """INSERT INTO auth_user_groups (user_id, group_id)
        SELECT i, g.id FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM auth_group) g ON g.k = mod(i, %(groups)s)
        WHERE mod(i, 3) = 0""",
        u,
        groups=n["groups"],
    )
    f.run(
        "api_tokens",
        f"""INSERT INTO audit_apitoken (prefix, digest, created_at, user_id, last_used_at, write_count)
        SELECT substr(md5('prefix' || i), 1, 8), encode(sha256(('bench-admin-token-' || i)::bytea), 'hex'),
               {_created("i", "%(n)s")}, i, CASE WHEN mod(i, 20) = 0 THEN %(end)s::timestamptz - interval '1 hour'
               * {h("i", 3, 500)} END, 0
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i WHERE mod(i, 10) = 0""",
        u,
    )
    fill_axes(f, n)
    ensure_monthly_partitions(f, "audit_auditevent")
    total = sum(share for *_x, share, _t in AUDITED)
    model_case, database_case, pk_case = [], [], []
    bound = 0
    for database, label, share, table in AUDITED:
        bound += share
        model_case.append(f"WHEN r < {bound} THEN '{label}'")
        database_case.append(f"WHEN r < {bound} THEN '{database}'")
        pk_case.append(f"WHEN r < {bound} THEN 1 + {h('i', 32, n[table])}")
    actions = "CASE WHEN a < 45 THEN 'create' WHEN a < 90 THEN 'update' WHEN a < 95 THEN 'delete' " + (
        "WHEN a < 97 THEN 'bulk' ELSE 'deny' END"
    )
    # Events i with i mod 10 < 3 have no actor; the others are numbered 0, 1, 2, ... and go to every user
    # in turn (a multiplier coprime with the count), so both sets list the same actors.
    step = _coprime_step(u)
    f.run(
        "audit_events",
        f"""INSERT INTO audit_auditevent (id, occurred_at, recorded_at, database, actor, actor_id, action, model,
               object_pk, changes)
        SELECT md5('bench-admin-event-' || i)::uuid, t, t + interval '1 millisecond' * (5 + {h("i", 33, 2000)}),
               CASE {" ".join(database_case)} END,
               coalesce(u.username, ''), u.id,
               {actions},
               CASE {" ".join(model_case)} END,
               (CASE {" ".join(pk_case)} END)::text,
               CASE WHEN a < 45 THEN jsonb_build_object('status', jsonb_build_object('old', NULL, 'new', 'placed'))
                    WHEN a < 90 THEN jsonb_build_object('stock', jsonb_build_object('old', {h("i", 34, 500)} + 1,
                         'new', {h("i", 34, 500)}))
                    ELSE '{{}}'::jsonb END
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i
        CROSS JOIN LATERAL (SELECT {h("i", 30, total)} AS r, {h("i", 31, 100)} AS a,
                                   least({_created("i", "%(n)s")} + interval '1 second' * {h("i", 35, 600)},
                                         %(end)s::timestamptz) AS t) x
        LEFT JOIN auth_user u
          ON mod(i, 10) >= 3 AND u.id = 1 + mod((7 * (i / 10) + mod(i, 10) - 3) * {step}, %(users)s)""",
        n["audit_events"],
        table="audit_auditevent",
        users=u,
    )
    f.vacuum(
        ["auth_user", "auth_group", "auth_user_groups", "audit_apitoken", "audit_auditevent"]
        + ["axes_accesslog", "axes_accessfailurelog", "axes_accessattempt"]
    )


AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "Mozilla/5.0 (Macintosh) Safari/19.0", "curl/8.5.0"]


def fill_axes(f: Filler, n: dict[str, int]) -> None:
    """django-axes' tables as a staff that logs in for two years leaves them: logins of the staff
    users (every 50th user), failed logins, and the attempts still counted (a few locked out)."""
    staff = f"(50 * (1 + {h('i', 91, '%(users)s / 50')}))"
    ip = f"('10.' || {h('i', 92, 4)} || '.' || {h('i', 93, 256)} || '.' || {h('i', 94, 254)} + 1)::inet"
    common = f"{pick(AGENTS, 'i', 95)}, {ip}, u.username, 'text/html', '/admin/login/', {_created('i', '%(n)s')}"
    f.run(
        "axes_access_log",
        f"""INSERT INTO axes_accesslog (user_agent, ip_address, username, http_accept, path_info, attempt_time,
               logout_time, session_hash)
        SELECT {common}, CASE WHEN mod(i, 3) = 0 THEN {_created("i", "%(n)s")} + interval '20 minutes' END,
               encode(sha256(('session-' || i)::bytea), 'hex')
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i JOIN auth_user u ON u.id = {staff}""",
        n["axes_logins"],
        users=n["users"],
    )
    f.run(
        "axes_failure_log",
        f"""INSERT INTO axes_accessfailurelog (user_agent, ip_address, username, http_accept, path_info,
               attempt_time, locked_out)
        SELECT {common}, mod(i, 10) = 0
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i JOIN auth_user u ON u.id = {staff}""",
        n["axes_failures"],
        users=n["users"],
    )
    fill_axes_attempts(f, n)


def fill_axes_attempts(f: Filler, n: dict[str, int]) -> None:
    """The attempts axes still counts: all in the ten minutes before the fill's end. Older ones would
    not stay: every login deletes the attempts older than AXES_COOLOFF_TIME. Run again (after the
    bench's own login) to put them back."""
    f.execute("DELETE FROM axes_accessattemptexpiration")
    f.execute("DELETE FROM axes_accessattempt")
    ip = f"('10.' || {h('i', 92, 4)} || '.' || {h('i', 93, 256)} || '.' || {h('i', 94, 254)} + 1)::inet"
    f.run(
        "axes_attempts",
        f"""INSERT INTO axes_accessattempt (user_agent, ip_address, username, http_accept, path_info, attempt_time,
               get_data, post_data, failures_since_start)
        SELECT {pick(AGENTS, "i", 95)}, {ip}, u.username, 'text/html', '/admin/login/',
               %(end)s::timestamptz - interval '10 seconds' * i, '', 'username=' || u.username, 1 + mod(i, 7)
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i JOIN auth_user u ON u.id = 1 + mod(i * 37, %(users)s)""",
        n["axes_attempts"],
        users=n["users"],
    )


def _coprime_step(n: int) -> int:
    from math import gcd

    step = 7919
    while gcd(step, n) != 1:
        step += 2
    return step


def ensure_monthly_partitions(f: Filler, table: str) -> list[str]:
    """When `table` is partitioned by range, a partition per month of the span (those missing)."""
    partitioned = f.execute(
        "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", (table,)
    ).fetchone()
    if not partitioned or partitioned[0] != "r":
        return []
    made = []
    month = (f.end - dt.timedelta(days=SPAN_DAYS + 31)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month <= f.end:
        following = (month + dt.timedelta(days=32)).replace(day=1)
        name = f"{table}_y{month:%Y}m{month:%m}"
        try:
            f.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(name), sql.Identifier(table), sql.Literal(month), sql.Literal(following)
                )
            )
            made.append(name)
        except psycopg.errors.DuplicateTable:
            pass  # the project made it already
        except psycopg.errors.InvalidObjectDefinition:
            pass  # another partition covers (part of) this month
        month = following
    if made:
        f.say(f"{f.tag}: made {len(made)} monthly partitions of {table} ({made[0]} .. {made[-1]})")
    return made


# --------------------------------------------------------------------------- market database


PRICE = f"(99 + {h('p', 11, 100_000)})"  # of product id `p`, in cents


def fill_market(f: Filler, n: dict[str, int]) -> None:
    products = n["products"]
    f.run(
        "products",
        f"""INSERT INTO market_product (id, sku, name, price_cents, stock, created, updated)
        SELECT p, 'SKU-' || lpad(p::text, 8, '0'),
               initcap({pick(ADJECTIVES, "p", 14)}) || ' ' || {pick(MATERIALS, "p", 15)} || ' '
               || {pick(NOUNS, "p", 16)}, {PRICE},
               CASE WHEN {h("p", 12, 10)} = 0 THEN 0 ELSE 1 + {h("p", 13, 500)} END, c,
               least(c + interval '1 day' * {h("p", 17, 90)}, %(end)s::timestamptz)
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) p, LATERAL (SELECT {_created("p", "%(n)s")} AS c) t""",
        products,
        table="market_product",
    )
    f.reset_sequence("market_product")
    # Line k (0-2) of order i: a product a third of the catalogue apart from the previous line's, so the
    # lines of an order never repeat a product; quantity 1-4 at the product's price.
    product_of = "(1 + mod(i * 31 + k * (%(products)s / 3), %(products)s))"
    lines = f"generate_series(0, {h('i', 21, 3)})"
    quantity = f"(1 + {h('i * 3 + k', 22, 4)})"
    f.run(
        "orders",
        f"""INSERT INTO market_order (id, buyer_id, total_cents, status, created_at)
        SELECT i, 1 + {h("i", 23, "%(users)s")},
               (SELECT sum({quantity} * p.price_cents) FROM {lines} k JOIN market_product p ON p.id = {product_of}),
               CASE WHEN {h("i", 24, 20)} = 0 THEN 'cancelled' ELSE 'placed' END, {_created("i", "%(n)s")}
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i""",
        n["orders"],
        table="market_order",
        products=products,
        users=n["users"],
    )
    f.reset_sequence("market_order")
    f.run(
        "order_lines",
        f"""INSERT INTO market_orderline (order_id, product_id, quantity, unit_price_cents)
        SELECT i, p.id, {quantity}, p.price_cents
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i CROSS JOIN LATERAL {lines} k
        JOIN market_product p ON p.id = {product_of}""",
        n["orders"],
        table="market_orderline",
        products=products,
    )
    f.run(
        "accounts",
        f"""INSERT INTO market_account (id, balance_cents, owner_id, created_at)
        SELECT i, {h("i", 41, 10_000_000)}, CASE WHEN {h("i", 42, 20)} = 0 THEN NULL
               ELSE 1 + {h("i", 43, "%(users)s")} END, {_created("i", "%(n)s")}
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i""",
        n["accounts"],
        table="market_account",
        users=n["users"],
    )
    f.reset_sequence("market_account")
    f.run(
        "transfers",
        f"""INSERT INTO market_transfer (id, amount_cents, requester_id, idempotency_key, request_hash, created_at,
               from_account_id, to_account_id)
        SELECT i, 1 + {h("i", 51, 100_000)}, 1 + {h("i", 52, "%(users)s")}, 'bench-' || i,
               encode(sha256(('bench-transfer-' || i)::bytea), 'hex'), {_created("i", "%(n)s")},
               src, 1 + mod(src + {h("i", 54, "%(accounts)s - 1")}, %(accounts)s)
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
             LATERAL (SELECT 1 + {h("i", 53, "%(accounts)s")} AS src) s""",
        n["transfers"],
        table="market_transfer",
        users=n["users"],
        accounts=n["accounts"],
    )
    f.reset_sequence("market_transfer")
    f.vacuum(["market_product", "market_order", "market_orderline", "market_account", "market_transfer"])


# --------------------------------------------------------------------------- blog database


def fill_blog(f: Filler, n: dict[str, int]) -> None:
    tags = n["tags"]
    topics = "ARRAY[" + ",".join(f"'{t}'" for t in TOPICS) + "]"
    f.run(
        "tags",
        f"""INSERT INTO blog_tag (id, name, slug)
        SELECT i, name, replace(name, ' ', '-')
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
             LATERAL (SELECT ({topics})[1 + mod(i - 1, {len(TOPICS)})]
                             || CASE WHEN i > {len(TOPICS)} THEN ' ' || ((i - 1) / {len(TOPICS)} + 1) ELSE '' END
                             AS name) t
        ON CONFLICT DO NOTHING""",
        tags,
    )
    f.reset_sequence("blog_tag")
    sentence = (
        f"initcap({pick(WORDS, 'i * 7 + s', 71)}) || ' ' || {pick(WORDS, 'i * 7 + s', 72)} || ' ' || "
        f"{pick(TOPICS, 'i * 7 + s', 73)} || ' ' || {pick(WORDS, 'i * 7 + s', 74)} || ' ' || "
        f"{pick(WORDS, 'i * 7 + s', 75)} || ' ' || {pick(VERBS, 'i * 7 + s', 76)} || ' ' || "
        f"{pick(WORDS, 'i * 7 + s', 77)} || ' ' || {pick(TOPICS, 'i * 7 + s', 78)} || '.'"
    )
    f.run(
        "posts",
        f"""INSERT INTO blog_post (id, title, slug, body, status, author_id, published_at, created_at, updated_at)
        SELECT i, title, lower(replace(title, ' ', '-')) || '-' || i,
               (SELECT string_agg({sentence}, ' ') FROM generate_series(1, 6 + {h("i", 79, 8)}) s),
               CASE WHEN pub THEN 'published' ELSE 'draft' END, 1 + {h("i", 63, "%(users)s")},
               CASE WHEN pub THEN c + interval '1 hour' * {h("i", 64, 48)} END, c,
               least(c + interval '1 day' * {h("i", 65, 30)}, %(end)s::timestamptz)
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i,
             LATERAL (SELECT initcap({pick(VERBS, "i", 66)}) || ' ' || {pick(TOPICS, "i", 67)} || ' '
                             || {pick(TOPICS, "i", 68)} || ' ' || {pick(WORDS, "i", 69)} AS title,
                             {h("i", 70, 10)} <> 0 AS pub, {_created("i", "%(n)s")} AS c) t""",
        n["posts"],
        table="blog_post",
        users=n["users"],
    )
    f.reset_sequence("blog_post")
    f.run(
        "post_tags",
        f"""INSERT INTO blog_post_tags (post_id, tag_id)
        SELECT i, 1 + mod({h("i", 81, "%(tags)s")} + k * (%(tags)s / 3), %(tags)s)
        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i
        CROSS JOIN LATERAL generate_series(1, {h("i", 82, 4)}) k""",
        n["posts"],
        table="blog_post_tags",
        tags=tags,
    )
    f.vacuum(["blog_tag", "blog_post", "blog_post_tags"])
