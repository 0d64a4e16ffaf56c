"""comfytrack settings: everything comes from the environment (README, "Configuration").

DEBUG is off unless set. With DEBUG off the secure settings are on by default, and
environment variables named like the Django settings override them.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "django-insecure-comfytrack-development-only"  # noqa: S105 — refused when DEBUG is off


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc.strerror}.") from None
    return os.environ.get(name, default)


DEBUG = envbool("DEBUG", False)
DATA_DIR = Path(os.environ.get("COMFYTRACK_DATA_DIR") or BASE_DIR / "var")

SECRET_KEY = envsecret("SECRET_KEY") or (DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY):
    raise ImproperlyConfigured("SECRET_KEY must be set to a long random value when DEBUG is off.")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "ninja",
    "axes",
    "accounts",
    "providers",
    "runs",
    "webhooks",
    "insights",
    "alerts",
]

MIDDLEWARE = [
    # First: every log line of the request carries its id, and probes are answered before the host
    # check and the HTTPS redirect (a load balancer probes a pod by its address, over plain HTTP).
    "comfytrack.logs.RequestIdMiddleware",
    "comfytrack.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "comfytrack.metrics.ApiMetricsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "comfytrack.urls"
WSGI_APPLICATION = "comfytrack.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The embedded default is a SQLite file; PostgreSQL (psycopg 3) for real deployments and CI.
# Connections are kept for CONN_MAX_AGE seconds and, with CONN_HEALTH_CHECKS, checked with Django's own
# `SELECT 1` once per request that reuses one, so a database restart costs no failed request.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'comfytrack.sqlite3'}",
        conn_max_age=envint("CONN_MAX_AGE", 60),
        conn_health_checks=envbool("CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and envbool("DATABASE_PREPARED_STATEMENTS", True):
    # Server-side parameter binding, and a statement run 5 times on a connection is prepared: PostgreSQL
    # then stops re-planning the API's and the sweep's hot queries (about half of its CPU per API request,
    # bench/api_throughput.py). Turn off behind a pooler that cannot keep prepared statements (PgBouncer
    # in transaction mode before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web process and the q cluster share the file.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Sign-in throttling (django-axes), for the login page and the admin's: after AXES_FAILURE_LIMIT wrong
# passwords for one username from one address, that pair is locked out for the cool-off time.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("COMFYTRACK_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("COMFYTRACK_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "accounts.client_ip.client_ip"
AXES_DISABLE_ACCESS_LOG = True  # failures are what we need; successful sign-ins need no row each
AXES_VERBOSE = False  # no banner on every management command; lockouts are still logged as warnings
# Proxies in front of the app that append to X-Forwarded-For (accounts.client_ip); 0 = none, use REMOTE_ADDR.
COMFYTRACK_TRUSTED_PROXY_COUNT = envint("COMFYTRACK_TRUSTED_PROXY_COUNT", 0)

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/runs/"
LOGOUT_REDIRECT_URL = "/login/"

# Static files via WhiteNoise; media (archived outputs) in Django storage under MEDIA_ROOT.
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or DATA_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or DATA_DIR / "media")
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": os.environ.get("COMFYTRACK_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if envbool("COMFYTRACK_STATIC_MANIFEST", not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Archived outputs and thumbnails in an S3-compatible bucket (AWS S3, MinIO, R2, …) when
# COMFYTRACK_S3_BUCKET is set; MEDIA_ROOT otherwise. The bucket stays private: members get files
# through the app (comfytrack.storage; docs/deploy.md "Object storage"). Without keys, boto3's own
# chain applies (instance role, AWS_* variables, ~/.aws).
COMFYTRACK_S3_BUCKET = os.environ.get("COMFYTRACK_S3_BUCKET", "").strip()
if COMFYTRACK_S3_BUCKET:
    from botocore.config import Config as BotoConfig

    STORAGES["default"] = {
        "BACKEND": "comfytrack.storage.BucketStorage",
        "OPTIONS": {
            "bucket_name": COMFYTRACK_S3_BUCKET,
            "endpoint_url": os.environ.get("COMFYTRACK_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("COMFYTRACK_S3_REGION") or None,
            "access_key": envsecret("COMFYTRACK_S3_ACCESS_KEY_ID") or None,
            "secret_key": envsecret("COMFYTRACK_S3_SECRET_ACCESS_KEY") or None,
            # Every key under this prefix ("" for the bucket's root), so one bucket can serve several installs.
            "location": os.environ.get("COMFYTRACK_S3_PREFIX", "").strip("/"),
            "addressing_style": os.environ.get("COMFYTRACK_S3_ADDRESSING_STYLE") or None,
            "signature_version": "s3v4",
            # Two outputs named alike must never overwrite each other (a HEAD per save finds a free name).
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
            "client_config": BotoConfig(
                connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
            ),
        },
    }

# Security: on by default when DEBUG is off; each can be overridden by its own variable.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if envbool("SECURE_PROXY_SSL_HEADER", False):
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Enforced CSP: our own origin only; scripts need the per-request nonce. Thumbnails and archived
# files are served from our own origin, so img-src needs no provider hosts.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "media-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}

# Credential encryption (Fernet/MultiFernet). The first key encrypts; all keys decrypt.
# Independent of SECRET_KEY, so rotating one never exposes or strands the other.
ENCRYPTION_KEYS: list[str] = [k.strip() for k in envsecret("COMFYTRACK_ENCRYPTION_KEYS").split(",") if k.strip()]
if not ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "COMFYTRACK_ENCRYPTION_KEYS must be set when DEBUG is off "
            "(generate one with: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        )
    from comfytrack.devkeys import development_encryption_key

    ENCRYPTION_KEYS = [development_encryption_key(DATA_DIR)]
else:
    from comfytrack.devkeys import validate_encryption_keys

    validate_encryption_keys(ENCRYPTION_KEYS)

# Provider HTTP
PROVIDER_HTTP_TIMEOUT = float(os.environ.get("PROVIDER_HTTP_TIMEOUT", "15"))

# django-q2: ORM broker by default (transactional with the schedule, inspectable in the admin);
# set COMFYTRACK_REDIS_URL to use Redis on larger installs. The sweep owns its own retries
# (next_sync_after), so the broker never re-runs a task: max_attempts=1, ack_failures=True.
Q_CLUSTER: dict[str, Any] = {
    # The name prefixes the cluster's Redis keys: deployments sharing one Redis need different names.
    "name": os.environ.get("COMFYTRACK_Q_NAME", "comfytrack"),
    # The sync, archive and webhook loops each hold a worker, two for a moment while one hands over to the
    # next (comfytrack.loops): six leave room for that and for one-off tasks.
    "workers": envint("COMFYTRACK_Q_WORKERS", 6),
    # Above the loops' 100 s (runs.tasks.LOOP_SECONDS) plus their last pass.
    "timeout": 120,
    "retry": 300,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 100,
    "label": "Task queue",
    "poll": 0.5,
}
if os.environ.get("COMFYTRACK_REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["COMFYTRACK_REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

# COMFYTRACK_LOG_FORMAT=json: one JSON object per line (for a log shipper); "plain" otherwise. Either
# way each line of a web request carries its request id (X-Request-ID, comfytrack.logs).
LOG_FORMAT = os.environ.get("COMFYTRACK_LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"COMFYTRACK_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "comfytrack.logs.RequestIdFilter"},
        # Webhook tokens in request paths (django.request writes the path of every 4xx/5xx) never print.
        "redact_paths": {"()": "comfytrack.logs.RedactPathsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_paths"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Output archive (runs.archive, comfytrack.safe_http) ---------------------------------------
# Provider output URLs are untrusted: private/loopback targets are refused unless they are the
# provider's own base URL host:port or listed here ("host" or "host:port", comma-separated).
COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS = envlist("COMFYTRACK_ARCHIVE_ALLOW_PRIVATE_HOSTS", [])
COMFYTRACK_ARCHIVE_MAX_BYTES = envint("COMFYTRACK_ARCHIVE_MAX_BYTES", 200 * 1024 * 1024)
# Total seconds per output download, redirects included.
COMFYTRACK_ARCHIVE_TIMEOUT = envint("COMFYTRACK_ARCHIVE_TIMEOUT", 60)
COMFYTRACK_ARCHIVE_CONCURRENCY = envint("COMFYTRACK_ARCHIVE_CONCURRENCY", 8)

# --- Dashboard (runs.views, runs.demo) ---------------------------------------------------------
# Seconds between htmx polls of unfinished runs on the runs list and run pages.
COMFYTRACK_POLL_SECONDS = envint("COMFYTRACK_POLL_SECONDS", 5)
# The out-of-the-box demo (`make run`): a Simulator provider, a Demo organization and a trickle of
# demo runs. On with DEBUG, off otherwise; set COMFYTRACK_DEMO=false to turn it off locally.
COMFYTRACK_DEMO = envbool("COMFYTRACK_DEMO", DEBUG)

# --- JSON API and outbound webhooks (comfytrack.api, webhooks) -----------------------------------
# Requests per API key (or signed-in user): "N/s", "N/min", "N/h", "N/day".
COMFYTRACK_API_RATE = os.environ.get("COMFYTRACK_API_RATE", "600/min")
# Absolute base for links we hand out (output URLs in webhooks), e.g. https://comfytrack.example.com.
# Empty: links are root-relative paths.
COMFYTRACK_PUBLIC_URL = os.environ.get("COMFYTRACK_PUBLIC_URL", "").rstrip("/")
# Webhook targets get the same SSRF rules as output downloads: private/loopback hosts are refused
# unless listed here ("host" or "host:port").
COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS = envlist("COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS", [])
# Seconds one delivery may take (connect + send + answer); a hanging endpoint never holds more than this.
COMFYTRACK_WEBHOOK_TIMEOUT = envint("COMFYTRACK_WEBHOOK_TIMEOUT", 10)

# --- Alerts (alerts): email through Django's email backend, Slack/Discord incoming webhooks --------
# Email goes to the SMTP server EMAIL_HOST (default localhost). With DEBUG on and no EMAIL_HOST it is
# printed to the console instead (local development).
_SMTP_HOST = os.environ.get("EMAIL_HOST", "")
MAILERS = {
    "default": (
        {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
        if DEBUG and not _SMTP_HOST
        else {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _SMTP_HOST or "localhost",
                "port": envint("EMAIL_PORT", 25),
                "username": os.environ.get("EMAIL_HOST_USER", ""),
                "password": envsecret("EMAIL_HOST_PASSWORD"),
                "use_tls": envbool("EMAIL_USE_TLS", False),
                "use_ssl": envbool("EMAIL_USE_SSL", False),
                "timeout": envint("EMAIL_TIMEOUT", 10),
            },
        }
    )
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "comfytrack <alerts@localhost>")
# Slack/Discord webhook URLs get the outbound SSRF rules too (private hosts only when listed here).
COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS = envlist("COMFYTRACK_ALERT_ALLOW_PRIVATE_HOSTS", [])

# --- Operations: probes and metrics (comfytrack.health, comfytrack.metrics; docs/deploy.md) ---------
# /metrics answers a request bearing this token (Authorization: Bearer …) or coming from one of the
# networks below; with neither set it answers nobody (403).
COMFYTRACK_METRICS_TOKEN = envsecret("COMFYTRACK_METRICS_TOKEN")
COMFYTRACK_METRICS_ALLOWED_NETWORKS = envlist("COMFYTRACK_METRICS_ALLOWED_NETWORKS", [])
for _network in COMFYTRACK_METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"COMFYTRACK_METRICS_ALLOWED_NETWORKS: {_network!r} is not an address or network (e.g. 10.0.0.0/8)."
        ) from None
