import pytest
from django.contrib.auth import get_user_model

from blog.models import Post
from config.demo import data as demo
from market.models import Account, Product


@pytest.mark.django_db(databases=["default", "blog", "market"])
def test_seed_demo_twice_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CREDENTIALS_FILE", tmp_path / "demo-admin.txt")
    demo.seed_demo(log=lambda line: None)
    counts = (get_user_model().objects.count(), Post.objects.count(), Product.objects.count(), Account.objects.count())
    password = (tmp_path / "demo-admin.txt").read_text().strip()
    assert counts == (1 + len(demo.AUTHORS), len(demo.POSTS), len(demo.PRODUCTS), len(demo.OPENING_BALANCES_CENTS))
    assert Post.objects.filter(status="published").count() == 6

    created = []
    demo.seed_demo(log=created.append)
    assert created == []
    assert counts == (
        get_user_model().objects.count(),
        Post.objects.count(),
        Product.objects.count(),
        Account.objects.count(),
    )
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert password in demo.demo_login()
