import pytest
from django.db import connections


@pytest.mark.django_db(databases=["default", "blog", "market"])
def test_every_primary_alias_answers_through_its_pool():
    for alias in ("default", "blog", "market"):
        with connections[alias].cursor() as cur:
            cur.execute("SELECT current_database(), current_setting('application_name')")
            name, app = cur.fetchone()
        assert name == f"test_{connections[alias].settings_dict['NAME'].removeprefix('test_')}"
        assert app.endswith(f":{alias}")
        assert connections[alias].pool is not None
