from django.apps import AppConfig


class UsersConfig(AppConfig):
    """The users API and API tokens."""

    name = "config.users"
    label = "users"
    verbose_name = "API tokens"

    def ready(self):
        from django.contrib.auth.models import Permission
        from django.contrib.contenttypes.models import ContentType
        from django.db.models.signals import post_delete, post_migrate, post_save

        from config.httpkit import auth, fastlane
        from config.users.fastlane import ROUTE
        from config.users.tokens import api_token_authenticate, forget_permission_names

        auth.set_token_authenticator(api_token_authenticate)
        fastlane.register(ROUTE)
        for model in (Permission, ContentType):
            post_save.connect(forget_permission_names, sender=model, dispatch_uid=f"tokens-{model.__name__}-save")
            post_delete.connect(forget_permission_names, sender=model, dispatch_uid=f"tokens-{model.__name__}-del")
        post_migrate.connect(forget_permission_names, dispatch_uid="tokens-migrate")
