from django.db import models


class DatabasesPage(models.Model):
    """No table: the content type that carries `adminkit.view_databases`, the permission to open
    the admin's Databases page (config/adminkit/databases.py). Superusers hold it."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_databases", "Can view the Databases page")]
