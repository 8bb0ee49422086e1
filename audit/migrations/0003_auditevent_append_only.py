"""Audit events are append-only in the database: whoever the owner granted more than
INSERT and SELECT (the app role, through `provision_roles`' default privileges when the
roles were provisioned before this table existed) loses it. Deleting old events goes
through the prune function `provision_roles` creates (config/multidb/ops/roles.py)."""

from django.db import migrations

REVOKE_WIDER_GRANTS = """
DO $$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT coalesce(quote_ident(r.rolname), 'PUBLIC') FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) a
        LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid = 'audit_auditevent'::regclass AND a.grantee <> c.relowner
          AND a.privilege_type NOT IN ('INSERT', 'SELECT')
    LOOP
        EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_auditevent FROM ' || grantee;
    END LOOP;
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_token_usage_and_deny")]

    operations = [migrations.RunSQL(REVOKE_WIDER_GRANTS, reverse_sql=migrations.RunSQL.noop)]
