"""Settings for the exchange, driven entirely by environment variables (see README: Configuration).

DEBUG is off unless set. With DEBUG off the process refuses to start without SECRET_KEY and
EXCHANGE_PEPPERS, so a production deployment cannot silently run on development secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from exchange.config import (
    ConfigError,
    envbool,
    envint,
    envlist,
    envsecret,
    parse_database_url,
    parse_peppers,
    parse_thresholds,
)
from exchange.normalization import KINDS

BASE_DIR = Path(__file__).resolve().parent.parent

# A fixed, publicly known development pepper: only ever used with DEBUG on (the demo, a laptop).
DEV_PEPPERS = "1:ZGV2ZWxvcG1lbnQtb25seS1wZXBwZXItZG8tbm90LXVzZS1pbi1wcm9kdWN0aW9uISE="

try:
    DEBUG = envbool("DEBUG")

    SECRET_KEY = envsecret("SECRET_KEY") or ""
    if not SECRET_KEY:
        if not DEBUG:
            raise ConfigError("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
        SECRET_KEY = "django-insecure-development-only-key-" + "x" * 24

    _peppers_raw = envsecret("EXCHANGE_PEPPERS")
    if not _peppers_raw:
        if not DEBUG:
            raise ConfigError("EXCHANGE_PEPPERS (or EXCHANGE_PEPPERS_FILE) must be set when DEBUG is off")
        _peppers_raw = DEV_PEPPERS
    # {version: secret}; the highest version is current. Never stored in the database.
    EXCHANGE_PEPPERS = parse_peppers(_peppers_raw)

    DATABASES = {
        "default": parse_database_url(
            os.environ.get("DATABASE_URL", "").strip() or "sqlite:///var/exchange.sqlite3", BASE_DIR
        )
    }
    _is_postgres = DATABASES["default"]["ENGINE"].endswith("postgresql")
    if _is_postgres and os.environ.get("TEST_DATABASE_NAME"):  # concurrent test runs on one server
        DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

    ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
    CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
    SITE_URL = os.environ.get("SITE_URL", "http://localhost:8000").rstrip("/")

    EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")
    DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "exchange@localhost")
    # Below the report claim timeout, so a hung SMTP send cannot let a second sender take the row over.
    EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30)
    EXCHANGE_REPORT_CLAIM_TIMEOUT = envint("EXCHANGE_REPORT_CLAIM_TIMEOUT", 600)
    if EMAIL_TIMEOUT >= EXCHANGE_REPORT_CLAIM_TIMEOUT:
        raise ConfigError("EMAIL_TIMEOUT must be shorter than EXCHANGE_REPORT_CLAIM_TIMEOUT")
    # Exchange analysts' digest of new and grown cross-platform clusters: off, daily or weekly.
    EXCHANGE_DIGEST_CADENCE = os.environ.get("EXCHANGE_DIGEST_CADENCE", "daily")
    if EXCHANGE_DIGEST_CADENCE not in {"off", "daily", "weekly"}:
        raise ConfigError(
            f"EXCHANGE_DIGEST_CADENCE must be off, daily or weekly, got {EXCHANGE_DIGEST_CADENCE!r}"
        )
    SERVER_EMAIL = DEFAULT_FROM_EMAIL
    EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "outbox"))
    # No SMTP host configured (the embedded default): report emails are written to EMAIL_FILE_PATH.
    EMAIL_BACKEND = (
        "django.core.mail.backends.smtp.EmailBackend"
        if EMAIL_HOST
        else "django.core.mail.backends.filebased.EmailBackend"
    )

    API_RATE = os.environ.get("EXCHANGE_API_RATE", "6000/min")
    # Reports stop linking after this many days unless re-reported; purged after the grace period.
    EXCHANGE_RETENTION_DAYS = envint("EXCHANGE_RETENTION_DAYS", 730)
    EXCHANGE_PURGE_GRACE_DAYS = envint("EXCHANGE_PURGE_GRACE_DAYS", 30)
    # Indicators a key may look up per UTC day.
    EXCHANGE_LOOKUP_DAILY_QUOTA = envint("EXCHANGE_LOOKUP_DAILY_QUOTA", 100_000)
    EXCHANGE_MAX_BATCH_SELLERS = envint("EXCHANGE_MAX_BATCH_SELLERS", 1000)
    EXCHANGE_MAX_SELLER_INDICATORS = envint("EXCHANGE_MAX_SELLER_INDICATORS", 100)
    EXCHANGE_MAX_LOOKUP_INDICATORS = envint("EXCHANGE_MAX_LOOKUP_INDICATORS", 100)
    # Largest request body accepted by the API (bytes); larger bodies get 413.
    DATA_UPLOAD_MAX_MEMORY_SIZE = envint("EXCHANGE_MAX_BODY_BYTES", 4 * 1024 * 1024)
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "False" if DEBUG else "True")
    REDIS_URL = os.environ.get("REDIS_URL", "")
    # worker: recomputations and reports run in a Procrastinate worker (PostgreSQL only), enqueued in the
    # same transaction as the change; sync: run inline after commit (the embedded SQLite default).
    EXCHANGE_TASK_MODE = os.environ.get("EXCHANGE_TASK_MODE", "worker" if _is_postgres else "sync")
    if EXCHANGE_TASK_MODE not in {"worker", "sync"}:
        raise ConfigError(f"EXCHANGE_TASK_MODE must be 'worker' or 'sync', got {EXCHANGE_TASK_MODE!r}")
    if EXCHANGE_TASK_MODE == "worker" and not _is_postgres:
        raise ConfigError("EXCHANGE_TASK_MODE=worker needs PostgreSQL (DATABASE_URL=postgres://...)")
    # Per-kind sharing thresholds above which an indicator stops linking, e.g. "phone:40,store_name:5".
    EXCHANGE_LINK_THRESHOLDS = parse_thresholds(os.environ.get("EXCHANGE_LINK_THRESHOLDS", ""))
    _unknown_kinds = sorted(set(EXCHANGE_LINK_THRESHOLDS) - set(KINDS))
    if _unknown_kinds:
        raise ConfigError(f"EXCHANGE_LINK_THRESHOLDS: unknown indicator kind(s) {', '.join(_unknown_kinds)}")
    # Hub counting caps each platform's share of an indicator's holders at ceil(threshold / divisor), so that
    # one (possibly hostile) platform alone cannot suppress an indicator and unlink others' clusters.
    EXCHANGE_HUB_PLATFORM_DIVISOR = envint("EXCHANGE_HUB_PLATFORM_DIVISOR", 3)
    if EXCHANGE_HUB_PLATFORM_DIVISOR < 1:
        raise ConfigError(
            f"EXCHANGE_HUB_PLATFORM_DIVISOR must be an integer >= 1, got {EXCHANGE_HUB_PLATFORM_DIVISOR}"
        )
    # A merge of other platforms' clusters caused only by one platform's sellers first reported (exchange
    # time) within this many days waits for an exchange analyst or a second platform's corroboration. 0: off.
    EXCHANGE_HELD_MERGE_DAYS = envint("EXCHANGE_HELD_MERGE_DAYS", 30)
    if EXCHANGE_HELD_MERGE_DAYS < 0:
        raise ConfigError(f"EXCHANGE_HELD_MERGE_DAYS must be an integer >= 0, got {EXCHANGE_HELD_MERGE_DAYS}")
    # Consortium setting: show other platforms' names (not their sellers) to partners. Off by default.
    EXCHANGE_REVEAL_PLATFORM_NAMES = envbool("EXCHANGE_REVEAL_PLATFORM_NAMES", "False")
except ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "exchange",
    "graph",
] + (["procrastinate.contrib.django"] if _is_postgres else [])  # its tables use PL/pgSQL

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "exchange.urls"
WSGI_APPLICATION = "exchange.wsgi.application"
ASGI_APPLICATION = "exchange.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Compressed but not hashed: works without a manifest, so tests and a fresh checkout need no
        # collectstatic; production runs collectstatic once (see README).
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Production hardening; all of it is off with DEBUG so the demo works over plain http://localhost.
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "True")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.authentication.HasApiKeyScope"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.authentication.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_RATE},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "exchange.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Bad-actor intelligence exchange: Partner API",
    "DESCRIPTION": "Partner API v1. Identifiers are sent as SHA-256 transport hashes only; see docs/hashing-spec.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGIN_URL = "admin:login"

# Structured logs (one key=value line per event). Never log raw identifiers, hashes or key secrets.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"format": "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "kv"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
