"""Test settings: production settings with a fast password hasher."""

from config.settings.base import *  # noqa: F401,F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # what subprocess servers (production settings) read
]
AXES_ENABLED = False  # enabled again by the tests about login throttling
AUDIT_RELAY_ON_COMMIT = False  # the after-commit relay thread is switched on by the tests about it
