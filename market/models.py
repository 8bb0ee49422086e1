from audit.outbox import OutboxEntry


class AuditOutbox(OutboxEntry):
    """Audit events of this database waiting for delivery to the shared database."""
