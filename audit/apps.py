from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail and API tokens"

    def ready(self):
        from audit import capture

        capture.connect_signals()
        from django.contrib.auth.models import Permission
        from django.contrib.contenttypes.models import ContentType
        from django.db.models.signals import post_delete, post_migrate, post_save

        from audit.services import forget_permission_names

        for model in (Permission, ContentType):
            post_save.connect(forget_permission_names, sender=model, dispatch_uid=f"tokens-{model.__name__}-save")
            post_delete.connect(forget_permission_names, sender=model, dispatch_uid=f"tokens-{model.__name__}-del")
        post_migrate.connect(forget_permission_names, dispatch_uid="tokens-migrate")
        checks.register(check_outboxes, checks.Tags.models)


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
