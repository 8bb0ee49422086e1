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

Append-only tables (the audit trail): every role but the owner may INSERT and
SELECT, nothing else; only the jobs role may delete, through a SECURITY DEFINER
function that deletes nothing younger than the retention (docs/faults.md).

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
class AppendOnly:
    """A table whose rows are written once and never changed: the audit trail."""

    table: str
    pk: str
    time_column: str  # what the retention is measured on
    retention_days: int  # nothing younger is ever deleted, whoever asks


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


def prune_function(table: str) -> str:
    """The function the jobs role deletes old rows of an append-only table with (in schema public)."""
    return f"{table}_prune"


# Grantees other than the owner holding anything beyond INSERT and SELECT on a table.
_WIDER_GRANTEES = """
SELECT DISTINCT coalesce(r.rolname, 'PUBLIC') FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner AND a.privilege_type NOT IN ('INSERT', 'SELECT')
ORDER BY 1
"""

# A function rather than a row-level security policy: no role but the owner holds
# DELETE at all, a request below the retention fails with a message instead of
# silently deleting nothing, and it can be created before the table exists
# (PL/pgSQL binds names at run time), so provisioning may come before migrating.
_PRUNE_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}(older_than_days integer, batch_size integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $prune$
DECLARE
    deleted integer;
BEGIN
    IF older_than_days IS NULL OR older_than_days < {retention} THEN
        RAISE EXCEPTION 'rows of % are kept for % days: cannot delete those younger than % days',
            {table_name}, {retention}, older_than_days USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM {table} WHERE {pk} IN (
        SELECT {pk} FROM {table} WHERE {column} < now() - make_interval(days => older_than_days)
        ORDER BY {column} LIMIT batch_size);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$prune$
"""


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
            f"rows younger than {t.retention_days} days are never deleted"
        )


def _provision_append_only(conn: psycopg.Connection, target: DatabaseRoles, spec: AppendOnly) -> None:
    """INSERT and SELECT for everyone the owner granted more; deletes only through the prune function."""
    table = sql.Identifier("public", spec.table)
    # The owner's default privileges granted UPDATE and DELETE when the table was created;
    # the audit migration takes them back when it runs after this (see audit/migrations).
    for (grantee,) in conn.execute(_WIDER_GRANTEES, [f"public.{spec.table}"]).fetchall():
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        conn.execute(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(table, who))
    function = sql.Identifier("public", prune_function(spec.table))
    signature = sql.SQL("{}(integer, integer)").format(function)
    conn.execute(
        sql.SQL(_PRUNE_FUNCTION).format(
            function=function,
            table=table,
            table_name=sql.Literal(spec.table),
            pk=sql.Identifier(spec.pk),
            column=sql.Identifier(spec.time_column),
            retention=sql.Literal(spec.retention_days),
        )
    )
    conn.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, sql.Identifier(target.owner)))
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(signature))
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM {}").format(signature, sql.Identifier(target.app)))
    if target.jobs:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(signature, sql.Identifier(target.jobs)))


def passwords_from_env(roles: list[str], overrides: dict[str, str]) -> dict[str, str | None]:
    """Each role's password from its variable (`--password-env ROLE=VAR` or the default name)."""
    return {role: os.environ.get(overrides.get(role, password_variable(role))) or None for role in roles}
