"""Least-privilege roles per database (`manage.py provision_roles`).

For every domain database `<db>` (shared, blog, market):
    <prefix>_<db>_owner  owns the database and its tables; runs migrations.
    <prefix>_<db>_app    the web role: CONNECT to this database only, DML on
                         its tables and sequences (now and, through default
                         privileges, on every table the owner creates later),
                         no CREATE, no TEMP; statement_timeout and
                         idle_in_transaction_session_timeout set on the role, so
                         they hold behind a transaction pooler too.
    <prefix>_<db>_jobs   the role of job processes (commands, the job worker): a
                         member of the app role, plus what a job needs and the web
                         must not have: TEMP where a job stages rows in temporary
                         tables, EXECUTE on the audit pruning function; the jobs
                         statement timeout.
PUBLIC loses CONNECT and TEMP on every database provisioned, so a role of one
database cannot even open another one on the same server.

Append-only tables (the audit trail, partitioned by month): every role but the
owner may INSERT and SELECT, nothing else, on the table and on each partition;
only the jobs role may delete, through a SECURITY DEFINER function that drops or
deletes nothing younger than the retention, and partitions are created by another
one that the app role may run (config/multidb/ops/appendonly.py, docs/faults.md).

Passwords come from environment variables and are sent as SCRAM-SHA-256
verifiers computed here: the server, its log and the network only ever see the
verifier, and the session also turns statement logging off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from config.multidb.ops.appendonly import (
    AppendOnly,
    install,
    narrow_grants_sql,
    partitions_function,
    partitions_signature,
    prune_function,
    prune_signature,
)

__all__ = ["AppendOnly", "DatabaseRoles", "partitions_function", "prune_function", "provision"]

SCRAM_ITERATIONS = 4096
# Relations Django creates in `public`; sequences owned by a column follow their table.
_FOREIGN_RELATIONS = """
SELECT c.relname, c.relkind FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
ORDER BY c.relname
"""
_ALTER_OWNER = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = salt or secrets.token_bytes(16)
    # PostgreSQL SASLpreps the password; NFKC covers what real passwords contain.
    normalized = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", normalized, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True)
class DatabaseRoles:
    alias: str
    database: str
    owner: str
    app: str
    statement_timeout_ms: int
    idle_in_transaction_timeout_ms: int
    jobs: str = ""
    jobs_statement_timeout_ms: int = 0
    jobs_temp: bool = False  # a job of this database stages rows in temporary tables
    append_only: AppendOnly | None = None

    @property
    def roles(self) -> list[str]:
        return [r for r in (self.owner, self.app, self.jobs) if r]


def password_variable(role: str) -> str:
    """`platform_blog_app` -> `PLATFORM_BLOG_APP_PASSWORD`."""
    return f"{role.upper()}_PASSWORD"


# Functions rather than a row-level security policy: no role but the owner holds DELETE
# at all, a request below the retention fails with a message instead of silently deleting
# nothing, and they can be created before the table exists (PL/pgSQL binds names at run time),
# so provisioning may come before migrating. Their SQL: config/multidb/ops/appendonly.py.


def provision(
    conninfo: dict, target: DatabaseRoles, *, passwords: dict[str, str | None], say: Callable[[str], None]
) -> None:
    """Create or update the roles and privileges of one database; safe to run again."""
    owner, app, db = sql.Identifier(target.owner), sql.Identifier(target.app), sql.Identifier(target.database)
    jobs = sql.Identifier(target.jobs) if target.jobs else None
    with psycopg.connect(**{**conninfo, "dbname": target.database}, autocommit=True) as conn:
        # Nothing below may reach the server log with its arguments.
        for setting in (
            "SET log_statement = 'none'",
            "SET log_min_error_statement = 'panic'",
            "SET log_min_duration_statement = -1",
        ):
            conn.execute(setting)
        for role in target.roles:
            ident = sql.Identifier(role)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                ).format(ident)
            )
            password = passwords.get(role)
            if password:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(scram_verifier(password))))
            note = "password set" if password else f"no password set ({password_variable(role)} not given)"
            say(f"  role {role}: {'updated' if exists else 'created'}, {note}")

        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app))
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(db, app))
        timeouts = [(app, target.statement_timeout_ms)]
        if jobs is not None:
            # Everything the web role may do, and only here what a job needs on top.
            conn.execute(sql.SQL("GRANT {} TO {}").format(app, jobs))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, jobs))
            temp = (
                "GRANT TEMPORARY ON DATABASE {} TO {}"
                if target.jobs_temp
                else "REVOKE TEMPORARY ON DATABASE {} FROM {}"
            )
            conn.execute(sql.SQL(temp).format(db, jobs))
            timeouts.append((jobs, target.jobs_statement_timeout_ms))
        for role, statement_ms in timeouts:
            for name, value in (
                ("statement_timeout", statement_ms),
                ("idle_in_transaction_session_timeout", target.idle_in_transaction_timeout_ms),
            ):
                conn.execute(
                    sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                        role, db, sql.Identifier(name), sql.Literal(str(value))
                    )
                )

        moved = 0
        for relname, kind in conn.execute(_FOREIGN_RELATIONS, [target.owner]).fetchall():
            conn.execute(
                sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(_ALTER_OWNER[kind]), sql.Identifier("public", relname), owner
                )
            )
            moved += 1
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(owner))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(app))
        conn.execute(sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(app))
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
            ).format(owner, app)
        )
        conn.execute(
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
            ).format(owner, app)
        )
        if target.append_only is not None:
            _provision_append_only(conn, target, target.append_only)
    extra = ""
    if target.jobs:
        extra = f"; {target.jobs}: the app's privileges{', TEMP' if target.jobs_temp else ''}"
        if target.append_only is not None:
            extra += f", EXECUTE on {prune_function(target.append_only.table)}()"
        extra += f", statement_timeout={target.jobs_statement_timeout_ms}ms"
    say(
        f"  database {target.database}: owner {target.owner}, CONNECT only for {target.app} (and the owner), "
        f"PUBLIC revoked; {moved} existing relation(s) handed to the owner; "
        f"{target.app}: statement_timeout={target.statement_timeout_ms}ms, "
        f"idle_in_transaction_session_timeout={target.idle_in_transaction_timeout_ms}ms{extra}"
    )
    if target.append_only is not None:
        t = target.append_only
        say(
            f"  {t.table}: INSERT and SELECT only for {target.app} and {target.jobs or 'nobody else'}; "
            f"rows younger than {t.retention_days} days are never deleted; "
            f"{partitions_function(t.table)}() for {target.app}"
        )


def _provision_append_only(conn: psycopg.Connection, target: DatabaseRoles, spec: AppendOnly) -> None:
    """INSERT and SELECT for everyone the owner granted more, on the table and its partitions;
    deletes only through the prune function (jobs role), partitions made by the ensure function."""
    # The owner's default privileges granted UPDATE and DELETE when the table (or a partition)
    # was created; the audit migrations take them back when they run after this.
    conn.execute(narrow_grants_sql(spec.table))
    install(conn, spec, replace=True)
    owner, app = sql.Identifier(target.owner), sql.Identifier(target.app)
    for signature in (prune_signature(spec.table), partitions_signature(spec.table)):
        conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, owner))
        conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(signature))
        conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM {}").format(signature, app))
    # Creating next months' partitions is harmless: the web's relay thread does it now and then.
    conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(partitions_signature(spec.table), app))
    if target.jobs:
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                prune_signature(spec.table), sql.Identifier(target.jobs)
            )
        )


def passwords_from_env(roles: list[str], overrides: dict[str, str]) -> dict[str, str | None]:
    """Each role's password from its variable (`--password-env ROLE=VAR` or the default name)."""
    return {role: os.environ.get(overrides.get(role, password_variable(role))) or None for role in roles}
