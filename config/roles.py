"""Least-privilege roles per database (`manage.py provision_roles`).

For every domain database `<db>` (shared, blog, market):
    <prefix>_<db>_owner  owns the database and its tables; runs migrations.
    <prefix>_<db>_app    the web/jobs role: CONNECT to this database only, DML on
                         its tables and sequences (now and, through default
                         privileges, on every table the owner creates later),
                         no CREATE, no TEMP; statement_timeout and
                         idle_in_transaction_session_timeout set on the role, so
                         they hold behind a transaction pooler too.
PUBLIC loses CONNECT and TEMP on every database provisioned, so a role of one
database cannot even open another one on the same server.

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
class Target:
    alias: str
    database: str
    owner: str
    app: str
    statement_timeout_ms: int
    idle_in_transaction_timeout_ms: int


def password_variable(role: str) -> str:
    """`platform_blog_app` -> `PLATFORM_BLOG_APP_PASSWORD`."""
    return f"{role.upper()}_PASSWORD"


def provision(conninfo: dict, target: Target, *, passwords: dict[str, str | None], say: Callable[[str], None]) -> None:
    """Create or update the roles and privileges of one database; safe to run again."""
    owner, app, db = sql.Identifier(target.owner), sql.Identifier(target.app), sql.Identifier(target.database)
    with psycopg.connect(**{**conninfo, "dbname": target.database}, autocommit=True) as conn:
        # Nothing below may reach the server log with its arguments.
        for setting in (
            "SET log_statement = 'none'",
            "SET log_min_error_statement = 'panic'",
            "SET log_min_duration_statement = -1",
        ):
            conn.execute(setting)
        for role, ident in ((target.owner, owner), (target.app, app)):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(
                    ident
                )
            )
            password = passwords.get(role)
            if password:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(scram_verifier(password))))
            note = "password set" if password else f"no password set ({password_variable(role)} not given)"
            say(f"  role {role}: {'updated' if exists else 'created'}, {note}")

        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app))
        for name, value in (
            ("statement_timeout", target.statement_timeout_ms),
            ("idle_in_transaction_session_timeout", target.idle_in_transaction_timeout_ms),
        ):
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    app, db, sql.Identifier(name), sql.Literal(str(value))
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
    say(
        f"  database {target.database}: owner {target.owner}, CONNECT only for {target.app} (and the owner), "
        f"PUBLIC revoked; {moved} existing relation(s) handed to the owner; "
        f"{target.app}: statement_timeout={target.statement_timeout_ms}ms, "
        f"idle_in_transaction_session_timeout={target.idle_in_transaction_timeout_ms}ms"
    )


def passwords_from_env(roles: list[str], overrides: dict[str, str]) -> dict[str, str | None]:
    """Each role's password from its variable (`--password-env ROLE=VAR` or the default name)."""
    return {role: os.environ.get(overrides.get(role, password_variable(role))) or None for role in roles}
