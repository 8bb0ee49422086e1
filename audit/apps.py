from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from audit import capture, relay
        from audit.context import acting_as
        from config.httpkit import auth
        from config.multidb import public

        capture.connect_signals()
        public.on_job_exit(relay.flush_at_job_exit)
        public.after_fork(relay.reset_after_fork)
        # The relay thread of every web worker delivers through the jobs pools.
        public.register_job_connections("audit relay", in_web_workers=True)
        public.set_outbox_reader(relay.outbox_status)
        auth.add_request_context(acting_as)
        checks.register(check_outboxes, checks.Tags.models)
        post_migrate.connect(ensure_partitions, sender=self, dispatch_uid="audit-partitions-ensure")


def ensure_partitions(using, **kwargs):
    """After every migrate of the shared database: next months' audit partitions exist."""
    from django.db import router

    from audit.models import AuditEvent
    from audit.services import audit_partitions_ensure

    if router.allow_migrate_model(using, AuditEvent):
        audit_partitions_ensure(using=using)


def check_outboxes(app_configs=None, **kwargs):
    """Every audited model's app has an outbox in the same database (or its events could not be written)."""
    from django.apps import apps

    from audit.capture import audited_models
    from audit.outbox import OutboxEntry

    errors = []
    for model in audited_models():
        try:
            outbox = apps.get_model(model._meta.app_label, "AuditOutbox")
        except LookupError:
            outbox = None
        if outbox is None or not issubclass(outbox, OutboxEntry):
            errors.append(
                checks.Error(
                    f"{model._meta.label} is audited but app {model._meta.app_label!r} has no AuditOutbox(OutboxEntry)",
                    obj=model,
                    id="audit.E001",
                )
            )
    return errors
