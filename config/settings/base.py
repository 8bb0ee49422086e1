"""Production settings. Everything variable comes from the environment through
config/multidb/conf/env.py and the topology in config/multidb/conf/databases.py; a bad value stops the
process here, before anything else runs."""

from config.multidb import tracing
from config.multidb.conf import databases as topology
from config.multidb.conf.env import BASE_DIR, ConfigError, fail, read_dotenv
from config.multidb.redact import redact_url

read_dotenv()
try:
    ENV = topology.read_all()
    DATABASES, DATABASE_ALIASES = topology.build(ENV)
    # Span exporters asked for by the standard OTEL_* variables; [] = no tracing (config/multidb/tracing.py).
    TRACES_EXPORTERS = tracing.exporter_names()
except ConfigError as exc:
    fail(str(exc))
# The parsed variables stay available (WEB_THREADS, ...) but URLs lose their
# passwords here: settings are shown on Django's debug page.
ENV = {k: redact_url(v) if isinstance(v, str) and "://" in v else v for k, v in ENV.items()}

SECRET_KEY = ENV["DJANGO_SECRET_KEY"]
DEBUG = ENV["DJANGO_DEBUG"]
ALLOWED_HOSTS = ENV["DJANGO_ALLOWED_HOSTS"]
APP_ROLE = ENV["APP_ROLE"]
API_FAST_LANE = ENV["API_FAST_LANE"]
DATABASE_ROUTERS = ["config.multidb.router.TopologyRouter"]
DATABASE_BREAKER_FAILURES = ENV["DATABASE_BREAKER_FAILURES"]
DATABASE_BREAKER_OPEN_SECONDS = ENV["DATABASE_BREAKER_OPEN_SECONDS"]
# Bulkhead (config/multidb/backend/guard.py): in a web worker at most half the threads
# may be stuck in slow calls on any one database; other processes have no limit.
DATABASE_BULKHEAD_LIMIT = max(ENV["WEB_THREADS"] // 2, 1) if APP_ROLE == "web" else 0

INSTALLED_APPS = [
    "config.adminkit",  # before the admin: its templates override the admin's (pagination, index)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "ninja",  # the API docs page's assets from the package, not a CDN
    "config.multidb",
    "config.httpkit",
    "config.users",
    "config.demo",
    "audit",
    "blog",
    "market",
]

MIDDLEWARE = [
    "config.httpkit.requestid.RequestIdMiddleware",  # outermost: every answer and log line has the id
    "config.httpkit.middleware.RequestMetricsMiddleware",  # sees every answer
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.httpkit.middleware.DatabaseErrorMiddleware",
    # Before anything that reads: opens the read scope (replicas, read-your-writes cookie).
    "config.httpkit.middleware.ReadYourWritesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

# The stack of `/api/`, `/healthz`, `/readyz` and `/metrics` (config/wsgi.py): token-authenticated
# JSON needs no sessions, CSRF, messages, frame options, login throttling or static files.
API_MIDDLEWARE = [
    "config.httpkit.requestid.RequestIdMiddleware",
    "config.httpkit.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.httpkit.middleware.AllowedHostsMiddleware",
    "config.httpkit.middleware.DatabaseErrorMiddleware",
    "config.httpkit.middleware.ReadYourWritesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The address counted is REMOTE_ADDR, or X-Forwarded-For only behind a declared proxy: a forged header
# can neither lock out another address nor dodge the count (config/httpkit/clientip.py).
TRUSTED_PROXY_COUNT = ENV["DJANGO_TRUSTED_PROXY_COUNT"]
AXES_CLIENT_IP_CALLABLE = "config.httpkit.clientip.client_ip"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # API bodies above this get 413

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# DJANGO_HTTPS=true in production (a TLS proxy in front of gunicorn, which binds
# 127.0.0.1): redirect to https, HSTS, secure cookies; `check --deploy` is clean.
# Off by default so `make run` keeps serving plain http on 127.0.0.1. Probes
# that reach gunicorn directly over http are never redirected.
if ENV["DJANGO_HTTPS"]:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Debug page and error reports: passwords masked wherever they appear (config/multidb/redact.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.multidb.redact.RedactingFilter"
DEFAULT_EXCEPTION_REPORTER = "config.multidb.redact.RedactingReporter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.httpkit.requestid.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "config.httpkit.logs.json_formatter"},
        "text": {"()": "config.httpkit.logs.TextFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": ENV["LOG_FORMAT"], "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "config": {"level": "INFO"},
        "audit": {"level": "INFO"},
        "access": {"level": "INFO"},  # one line per request (config/httpkit/logs.py)
        "psycopg.pool": {"level": "ERROR"},
        # A traceback per forged Host; config.httpkit.errors.bad_request logs one line naming
        # DJANGO_ALLOWED_HOSTS instead.
        "django.security.DisallowedHost": {"level": "CRITICAL"},
    },
}
