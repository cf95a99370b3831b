"""Settings for the exchange, driven entirely by environment variables (see README: Configuration).

DEBUG is off unless set. With DEBUG off the process refuses to start without SECRET_KEY and
EXCHANGE_PEPPERS, so a production deployment cannot silently run on development secrets.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from exchange import contract
from exchange.config import (
    ConfigError,
    envbool,
    envfloat,
    envint,
    envlist,
    envsecret,
    parse_database_url,
    parse_networks,
    parse_peppers,
    parse_redis_url,
    parse_replica_url,
    parse_similarities,
    parse_strengths,
    parse_thresholds,
)
from exchange.contract import FUZZY_ENCODING_KIND
from exchange.fuzzy import DEFAULT_THRESHOLDS as FUZZY_DEFAULT_THRESHOLDS
from exchange.normalization import LINK_KINDS

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
            (envsecret("DATABASE_URL") or "").strip() or "sqlite:///var/exchange.sqlite3", BASE_DIR
        )
    }
    _is_postgres = DATABASES["default"]["ENGINE"].endswith("postgresql")
    if _is_postgres and os.environ.get("TEST_DATABASE_NAME"):  # concurrent test runs on one server
        DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
    # Optional read scaling: lookups and partner reads run on a PostgreSQL replica inside an explicit scope
    # (exchange/routers.py); everything else, and every write, stays on the primary.
    _replica = parse_replica_url(envsecret("DATABASE_REPLICA_URL") or "", DATABASES["default"])
    if _replica is not None:
        DATABASES["replica"] = _replica
        DATABASE_ROUTERS = ["exchange.routers.ReplicaRouter"]

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
    # A retraction within this many hours of the seller's first report is flagged as a suspected probe
    # (audit log and exchange analysts' digest); 0 switches the flag off.
    EXCHANGE_PROBE_WINDOW_HOURS = envint("EXCHANGE_PROBE_WINDOW_HOURS", 24)
    if EXCHANGE_PROBE_WINDOW_HOURS < 0:
        raise ConfigError(f"EXCHANGE_PROBE_WINDOW_HOURS must be 0 or more, got {EXCHANGE_PROBE_WINDOW_HOURS}")
    # Admin hash searches and cluster pages a platform's analysts may open per UTC day (all analysts together).
    EXCHANGE_ANALYST_DAILY_QUOTA = envint("EXCHANGE_ANALYST_DAILY_QUOTA", 1000)
    if EXCHANGE_ANALYST_DAILY_QUOTA < 0:
        raise ConfigError(
            f"EXCHANGE_ANALYST_DAILY_QUOTA must be 0 or more, got {EXCHANGE_ANALYST_DAILY_QUOTA}"
        )
    EXCHANGE_MAX_BATCH_SELLERS = envint("EXCHANGE_MAX_BATCH_SELLERS", contract.DEFAULT_MAX_BATCH_SELLERS)
    EXCHANGE_MAX_SELLER_INDICATORS = envint(
        "EXCHANGE_MAX_SELLER_INDICATORS", contract.DEFAULT_MAX_SELLER_INDICATORS
    )
    EXCHANGE_MAX_LOOKUP_INDICATORS = envint(
        "EXCHANGE_MAX_LOOKUP_INDICATORS", contract.DEFAULT_MAX_LOOKUP_INDICATORS
    )
    # Largest request body accepted by the API (bytes); larger bodies get 413.
    DATA_UPLOAD_MAX_MEMORY_SIZE = envint("EXCHANGE_MAX_BODY_BYTES", contract.DEFAULT_MAX_BODY_BYTES)
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "False" if DEBUG else "True")
    # Trust X-Forwarded-Proto (the request came in over HTTPS at the proxy). Off by default: any client that
    # reaches gunicorn directly could send it.
    EXCHANGE_TRUST_PROXY = envbool("EXCHANGE_TRUST_PROXY", "False")
    REDIS_URL = parse_redis_url(os.environ.get("REDIS_URL", ""))
    # worker: recomputations and reports run in a Procrastinate worker (PostgreSQL only), enqueued in the
    # same transaction as the change; sync: the recomputation runs inline inside the change's own transaction
    # (not after commit), so the change and its clusters commit or roll back together (the SQLite default).
    EXCHANGE_TASK_MODE = os.environ.get("EXCHANGE_TASK_MODE", "worker" if _is_postgres else "sync")
    if EXCHANGE_TASK_MODE not in {"worker", "sync"}:
        raise ConfigError(f"EXCHANGE_TASK_MODE must be 'worker' or 'sync', got {EXCHANGE_TASK_MODE!r}")
    if EXCHANGE_TASK_MODE == "worker" and not _is_postgres:
        raise ConfigError("EXCHANGE_TASK_MODE=worker needs PostgreSQL (DATABASE_URL=postgres://...)")
    # Per-kind sharing thresholds above which an indicator stops linking, e.g. "phone:40,store_name:5".
    EXCHANGE_LINK_THRESHOLDS = parse_thresholds(os.environ.get("EXCHANGE_LINK_THRESHOLDS", ""))
    _unknown_kinds = sorted(set(EXCHANGE_LINK_THRESHOLDS) - set(LINK_KINDS))
    if _unknown_kinds:
        raise ConfigError(f"EXCHANGE_LINK_THRESHOLDS: unknown indicator kind(s) {', '.join(_unknown_kinds)}")
    # Per-kind strength overrides, e.g. "image:strong" (a consortium whose photos are all original shots) or
    # "document:weak"; the defaults are graph.linking.rules.DEFAULT_STRENGTH.
    EXCHANGE_LINK_STRENGTHS = parse_strengths(os.environ.get("EXCHANGE_LINK_STRENGTHS", ""))
    _unknown_kinds = sorted(set(EXCHANGE_LINK_STRENGTHS) - set(LINK_KINDS))
    if _unknown_kinds:
        raise ConfigError(f"EXCHANGE_LINK_STRENGTHS: unknown indicator kind(s) {', '.join(_unknown_kinds)}")
    # Two fuzzy encodings of a name or an address match when their Dice similarity is at least the kind's
    # threshold, e.g. "person_name:0.72,shipping_address_fuzzy:0.85" (defaults: exchange.fuzzy, per kind).
    EXCHANGE_FUZZY_MATCH_THRESHOLDS = {
        kind: FUZZY_DEFAULT_THRESHOLDS[spec_kind] for kind, spec_kind in FUZZY_ENCODING_KIND.items()
    } | parse_similarities(
        os.environ.get("EXCHANGE_FUZZY_MATCH_THRESHOLDS", ""), "EXCHANGE_FUZZY_MATCH_THRESHOLDS"
    )
    _unknown_kinds = sorted(set(EXCHANGE_FUZZY_MATCH_THRESHOLDS) - set(FUZZY_ENCODING_KIND))
    if _unknown_kinds:
        raise ConfigError(
            f"EXCHANGE_FUZZY_MATCH_THRESHOLDS: not a fuzzy kind: {', '.join(_unknown_kinds)} "
            f"(fuzzy kinds: {', '.join(FUZZY_ENCODING_KIND)})"
        )
    # Two product photos (kind `image`) match when their PDQ hashes are at most this many bits apart (of 256;
    # PDQ's published default 31). Raising it trades false matches for recall: calibrate first (README).
    EXCHANGE_IMAGE_MATCH_THRESHOLD = envint("EXCHANGE_IMAGE_MATCH_THRESHOLD", 31)
    if not 0 <= EXCHANGE_IMAGE_MATCH_THRESHOLD <= 63:
        raise ConfigError(
            f"EXCHANGE_IMAGE_MATCH_THRESHOLD must be an integer from 0 to 63, got {EXCHANGE_IMAGE_MATCH_THRESHOLD}"
        )
    # Two documents (kind `document`) match when their estimated Jaccard similarity is at least this. The LSH
    # bands are tuned for 0.8 (exchange.documents): below 0.7 near pairs start to escape the index.
    EXCHANGE_DOCUMENT_MATCH_THRESHOLD = envfloat("EXCHANGE_DOCUMENT_MATCH_THRESHOLD", 0.8)
    if not 0.7 <= EXCHANGE_DOCUMENT_MATCH_THRESHOLD <= 1.0:
        raise ConfigError(
            "EXCHANGE_DOCUMENT_MATCH_THRESHOLD must be a number from 0.7 to 1.0, got "
            f"{EXCHANGE_DOCUMENT_MATCH_THRESHOLD}"
        )
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
    # Who must pass a TOTP second factor after the admin password: exchange (exchange analysts and
    # superusers), all (partner analysts too) or off (development only).
    EXCHANGE_ADMIN_2FA = os.environ.get("EXCHANGE_ADMIN_2FA", "").strip() or "exchange"
    if EXCHANGE_ADMIN_2FA not in {"exchange", "all", "off"}:
        raise ConfigError(f"EXCHANGE_ADMIN_2FA must be exchange, all or off, got {EXCHANGE_ADMIN_2FA!r}")
    if EXCHANGE_ADMIN_2FA == "off" and not DEBUG:
        raise ConfigError("EXCHANGE_ADMIN_2FA=off is allowed only with DEBUG")
    # Optional single sign-on for the admin through an OpenID Connect provider (accounts/oidc.py): on when
    # OIDC_RP_CLIENT_ID is set, which then needs the secret and the provider's endpoints.
    OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "").strip()
    OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = envsecret("OIDC_RP_CLIENT_SECRET") or ""
    OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "").strip()
    OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "").strip()
    OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "").strip()
    OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "").strip()
    if OIDC_ENABLED:
        _missing = [
            name
            for name, value in [
                ("OIDC_RP_CLIENT_SECRET", OIDC_RP_CLIENT_SECRET),
                ("OIDC_OP_AUTHORIZATION_ENDPOINT", OIDC_OP_AUTHORIZATION_ENDPOINT),
                ("OIDC_OP_TOKEN_ENDPOINT", OIDC_OP_TOKEN_ENDPOINT),
                ("OIDC_OP_USER_ENDPOINT", OIDC_OP_USER_ENDPOINT),
                ("OIDC_OP_JWKS_ENDPOINT", OIDC_OP_JWKS_ENDPOINT),
            ]
            if not value
        ]
        if _missing:
            raise ConfigError(f"OIDC_RP_CLIENT_ID is set, so these must be set too: {', '.join(_missing)}")
        _plain = [
            u
            for u in (OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT, OIDC_OP_JWKS_ENDPOINT)
            if u.startswith("http://")
        ]
        if _plain and not DEBUG:
            raise ConfigError(f"OIDC endpoints must use https:// when DEBUG is off, got {_plain[0]}")
    OIDC_RP_SIGN_ALGO = "RS256"
    OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
    EXCHANGE_OIDC_ISSUER = os.environ.get("EXCHANGE_OIDC_ISSUER", "").strip()
    # The claim mapped onto the two roles: "<exchange value>" or "<partner prefix><platform slug>".
    EXCHANGE_OIDC_ROLE_CLAIM = os.environ.get("EXCHANGE_OIDC_ROLE_CLAIM", "").strip() or "roles"
    EXCHANGE_OIDC_EXCHANGE_VALUE = (
        os.environ.get("EXCHANGE_OIDC_EXCHANGE_VALUE", "").strip() or "exchange-analyst"
    )
    EXCHANGE_OIDC_PARTNER_PREFIX = (
        os.environ.get("EXCHANGE_OIDC_PARTNER_PREFIX", "").strip() or "partner-analyst:"
    )
    # An admin session ends after this many minutes without a request (each request renews it).
    EXCHANGE_ADMIN_IDLE_MINUTES = envint("EXCHANGE_ADMIN_IDLE_MINUTES", 30)
    if not 1 <= EXCHANGE_ADMIN_IDLE_MINUTES <= 7 * 24 * 60:
        raise ConfigError(
            f"EXCHANGE_ADMIN_IDLE_MINUTES must be between 1 and 10080, got {EXCHANGE_ADMIN_IDLE_MINUTES}"
        )
    # Webhooks to partner platforms (graph/webhooks.py). Registered URLs must be https:// (http:// only to
    # localhost, and only with EXCHANGE_WEBHOOK_ALLOW_HTTP, for tests and development), and their host must
    # resolve to public addresses only, checked again at every delivery: the exchange must not be made to
    # call into its own network (SSRF). EXCHANGE_WEBHOOK_ALLOWED_NETWORKS (CIDRs) allows private ones.
    EXCHANGE_WEBHOOK_ALLOW_HTTP = envbool("EXCHANGE_WEBHOOK_ALLOW_HTTP", "False")
    EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = parse_networks(
        os.environ.get("EXCHANGE_WEBHOOK_ALLOWED_NETWORKS", ""), "EXCHANGE_WEBHOOK_ALLOWED_NETWORKS"
    )
    # CA certificates (PEM) that webhook receivers' certificates must chain to, instead of the system's.
    EXCHANGE_WEBHOOK_CA_FILE = os.environ.get("EXCHANGE_WEBHOOK_CA_FILE", "").strip()
    # Seconds for each connect and read of a delivery. A delivery takes at most about three of them, which
    # must fit in the claim timeout, or a second sender could take a delivery over while it is still sent.
    EXCHANGE_WEBHOOK_TIMEOUT = envint("EXCHANGE_WEBHOOK_TIMEOUT", 10)
    EXCHANGE_WEBHOOK_CLAIM_TIMEOUT = envint("EXCHANGE_WEBHOOK_CLAIM_TIMEOUT", 120)
    if not 1 <= EXCHANGE_WEBHOOK_TIMEOUT < EXCHANGE_WEBHOOK_CLAIM_TIMEOUT / 3:
        raise ConfigError(
            "EXCHANGE_WEBHOOK_TIMEOUT must be at least 1 and below a third of EXCHANGE_WEBHOOK_CLAIM_TIMEOUT"
        )
    # Prometheus metrics at /metrics (exchange/metrics.py), only to `Authorization: Bearer <METRICS_TOKEN>`;
    # unset, /metrics is not served. Several processes share one scrape through PROMETHEUS_MULTIPROC_DIR.
    METRICS_TOKEN = envsecret("METRICS_TOKEN") or ""
    if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
        raise ConfigError(
            "METRICS_TOKEN must be at least 32 characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
except ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

INSTALLED_APPS = [
    "accounts.apps.ExchangeAdminConfig",  # django.contrib.admin with the second-factor admin site
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
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "exchange",
    "graph",
] + (["procrastinate.contrib.django"] if _is_postgres else [])  # its tables use PL/pgSQL
# The worker's job latency and duration metrics (a worker middleware), added when Procrastinate's app is made.
PROCRASTINATE_ON_APP_READY = "graph.metrics.instrument_worker"

MIDDLEWARE = [
    "csp.middleware.CSPMiddleware",
    "exchange.probes.ProbeMiddleware",  # /healthz, /readyz, /metrics over plain HTTP, any Host (before the redirect)
    "exchange.requestid.RequestIdMiddleware",  # a request id on every log line and the response
    "exchange.metrics.RequestMetricsMiddleware",  # counts and times what the probes do not answer
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): passed the second factor
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
FORMAT_MODULE_PATH = ["exchange.formats"]  # ISO dates on every page (exchange/formats/en/formats.py)

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

# With REDIS_URL every process shares the cache, so the per-key API throttle counts across workers; without
# it each process counts alone. The admin login limit does not use the cache (accounts/login.py).
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
    if EXCHANGE_TRUST_PROXY:  # only behind a proxy that sets the header itself (README, "Behind a TLS proxy")
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response (admin, API, API docs). No inline or eval'd script anywhere: the
# Swagger UI loads its initialiser as a file (SpectacularSwaggerSplitView). Styles allow 'unsafe-inline'
# because style *attributes* cannot carry a nonce: the cluster page's meter widths are computed server-side
# and Swagger UI renders style attributes; a style can neither run script nor send a request (img/font/
# connect stay 'self'). data: images are Swagger UI's and the admin's inline SVG icons in their CSS.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.authentication.HasApiKeyScope"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.authentication.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": API_RATE},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["exchange.parsers.JSONParser"],  # refuses deep nesting with a 400
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "exchange.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Bad-actor intelligence exchange: Partner API",
    "DESCRIPTION": (
        "Partner API v1. Identifiers are sent as SHA-256 transport hashes only; see the "
        "[hashing spec](/api/v1/hashing-spec/) (Markdown, served without a key)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "AppealOutcomeEnum": "exchange.contract.APPEAL_OUTCOMES",
        "ImageKindEnum": "exchange.contract.IMAGE_KINDS",
        "DocumentKindEnum": "exchange.contract.DOCUMENT_KINDS",
        "FuzzyKindEnum": "exchange.contract.FUZZY_WIRE_KINDS",
        "KindEnum": "exchange.normalization.KINDS",  # the exact kinds, as before images
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "exchange.serializers.request_bodies_are_closed",
    ],
}

LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"] + (
    ["accounts.oidc.ExchangeOIDCBackend"] if OIDC_ENABLED else []
)
# mozilla-django-oidc: PKCE on; users matched by email, named by it; back to the admin (and its second factor).
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_USERNAME_ALGO = "accounts.oidc.username_from_claims"
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?sso=refused"
# Admin sessions expire after EXCHANGE_ADMIN_IDLE_MINUTES of inactivity: every request that carries a session
# renews its expiry. Only the admin uses sessions (the API authenticates every request by its key).
SESSION_COOKIE_AGE = EXCHANGE_ADMIN_IDLE_MINUTES * 60
SESSION_SAVE_EVERY_REQUEST = True
OTP_TOTP_ISSUER = "Bad-actor exchange"

# Error reports to Sentry or a Sentry-compatible receiver, stripped to type and stack (exchange/errorreport.py).
SENTRY_DSN = (envsecret("SENTRY_DSN") or "").strip()
if SENTRY_DSN:
    from exchange import errorreport

    errorreport.init(
        SENTRY_DSN, os.environ.get("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
    )

# Structured logs: one line per record, every value escaped (exchange/logformat.py), so nothing a partner
# sends can split a record or add a key. Never log raw identifiers, hashes or key secrets.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "kv").strip().lower()
if LOG_FORMAT not in {"kv", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'kv' or 'json', got {LOG_FORMAT!r}")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"()": "exchange.logformat.KeyValueFormatter"},
        "json": {"()": "exchange.logformat.JsonFormatter"},
    },
    # Procrastinate writes a job's arguments (every seller id of a recompute) into its lines: counts instead.
    "filters": {"job_arguments_as_counts": {"()": "graph.joblog.JobArgumentsAsCounts"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["job_arguments_as_counts"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's defaults give these their own handlers with a plain format (printed under DEBUG, e.g.
        # "Not Found: <raw path>"): without handlers they reach the root's one formatter instead.
        "django": {"handlers": [], "level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "py.warnings": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # WeasyPrint's font subsetter narrates every glyph table of every referral PDF at INFO.
        "fontTools": {"level": "WARNING"},
    },
}
# Python warnings (e.g. WhiteNoise's "No directory at") become py.warnings records instead of raw,
# multi-line stderr text; Django no longer switches this on itself.
logging.captureWarnings(True)
