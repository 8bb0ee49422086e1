"""ApiToken now belongs to config.users (its migration 0001 takes the model over; the table
stays)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_auditevent_append_only"),
        ("users", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiToken")],
            database_operations=[],
        ),
    ]
