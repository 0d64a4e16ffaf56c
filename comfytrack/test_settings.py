"""Settings for the test suite: production-like (DEBUG off) with fixed test secrets."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
# Two keys so rotation paths are exercised; the first encrypts.
os.environ.setdefault(
    "COMFYTRACK_ENCRYPTION_KEYS",
    "Vy3E8jzT0ZkM4m7lQb8r8wJ8d0m8r5mQ2Vq7xJk9T3Y=,yU5bS0c1KcNwz3o0b4pG0M8y3sI3rT7dGq1X0p8kV2Q=",
)
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("COMFYTRACK_STATIC_MANIFEST", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

from comfytrack.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = DATA_DIR / "test-media"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 — WhiteNoise warns about a missing directory
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, as in production, not Django's default in-memory test database: that one is shared between
    # threads through SQLite's shared cache, whose table locks fail at once ("database table is locked")
    # instead of waiting out the busy timeout, which would fail the tests of concurrent workers on SQLite.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}  # noqa: F405
