"""Settings, all read from the environment.

DEBUG defaults to on for a local checkout; with DEBUG off the process refuses to start
without SECRET_KEY. DATABASE_URL selects PostgreSQL (else SQLite in WAL mode under the data
directory); REDIS_URL selects a Redis server (else the embedded one, see embedded_redis.py).
"""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("NAS_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # A development key that survives restarts, so sessions stay valid across `make run`s.
    key_file = DATA_DIR / "dev_secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_dramatiq",
    "experiments",
    "nasweb",  # the `up` and `worker` management commands: they start the whole product
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "nasweb.middleware.ApiBodyLimit",  # before anything reads the body (hostile-input limits)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "nasweb.middleware.SignInLockout",  # after CSRF: its process_view runs after CSRF's check
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "nasweb.urls"
ASGI_APPLICATION = "nasweb.asgi.application"
WSGI_APPLICATION = None

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
            ],
        },
    },
]

# Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets the web server read while workers write; IMMEDIATE makes a writing
                # transaction take the lock up front instead of failing on upgrade mid-way.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Dramatiq broker and channel layer share one server ---------------------------------
REDIS_URL = env_str("REDIS_URL")
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    from .embedded_redis import socket_url

    REDIS_URL = socket_url(DATA_DIR / "redis.sock")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "nas")},
    }
}

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": REDIS_URL, "namespace": env_str("DRAMATIQ_NAMESPACE", "nas-dramatiq")},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
# The actors live in experiments/jobs/actors.py (nothing else defines one).
DRAMATIQ_AUTODISCOVER_MODULES = ["jobs.actors"]
# Torch threads per trial inside a worker process (see experiments/jobs/actors.py).
WORKER_TORCH_THREADS = env_int("WORKER_TORCH_THREADS", 1)
# A running trial whose heartbeat is older than this is considered dead and re-queued.
TRIAL_LEASE_SECONDS = env_int("TRIAL_LEASE_SECONDS", 60)
TRIAL_MAX_ATTEMPTS = env_int("TRIAL_MAX_ATTEMPTS", 3)
# Worker supervision (experiments/jobs/service.py, `manage.py worker`): a process whose trials
# fail this many times in a row, each within WORKER_FAST_FAILURE_S, takes itself out of service;
# its supervisor replaces a dead or retired process after a back-off of 1 s doubling up to
# WORKER_RESTART_MAX_BACKOFF_S; the periodic check (reap, re-send, advance) runs from each
# supervisor every WORKER_SWEEP_SECONDS.
WORKER_FAST_FAILURES = env_int("WORKER_FAST_FAILURES", 3)
WORKER_FAST_FAILURE_S = env_int("WORKER_FAST_FAILURE_S", 2)
WORKER_RESTART_MAX_BACKOFF_S = env_int("WORKER_RESTART_MAX_BACKOFF_S", 60)
WORKER_SWEEP_SECONDS = env_int("WORKER_SWEEP_SECONDS", max(1, min(10, TRIAL_LEASE_SECONDS // 3)))
# CSV tables the `tabular` estimator may read (NAS-Bench-201-keyed benchmark results). The form
# lists the *.csv files of this folder and the API accepts only their names: a person picks a
# table an administrator put here, never an arbitrary path on the server. Every worker machine
# needs the same folder.
TABULAR_BENCHMARK_DIR = Path(env_str("TABULAR_BENCHMARK_DIR", str(DATA_DIR / "benchmarks"))).resolve()

# Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Refuses nothing: deletes the user's API tokens whenever a new password is saved.
    {"NAME": "experiments.api.tokens.RevokeTokensOnPasswordChange"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"
SIGNUP_ENABLED = env_bool("SIGNUP_ENABLED", True)

# Sign-in protection (experiments/api/auth.py): this many wrong passwords for one username from
# one address within the window lock that pair out (the right password too) for the lockout time.
AUTHENTICATION_BACKENDS = ["experiments.api.auth.LockoutBackend"]
SIGNIN_MAX_FAILURES = env_int("SIGNIN_MAX_FAILURES", 10)
SIGNIN_MAX_FAILURES_PER_IP = env_int("SIGNIN_MAX_FAILURES_PER_IP", 100)  # over any usernames
SIGNIN_WINDOW_MINUTES = env_int("SIGNIN_WINDOW_MINUTES", 15)
SIGNIN_LOCKOUT_MINUTES = env_int("SIGNIN_LOCKOUT_MINUTES", 15)
SIGNIN_RATE = env_str("SIGNIN_RATE", "30/min")  # requests to /api/auth/token/ per address
# API tokens expire this long after they are issued (0: never); a password change revokes them.
API_TOKEN_TTL_HOURS = env_int("API_TOKEN_TTL_HOURS", 720)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Failure counts must be shared by every web process: Redis when one is configured; the
    # embedded one serves a single machine's single web process, so memory is enough there.
    "signin": (
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "signin"}
        if EMBEDDED_REDIS
        else {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
              "KEY_PREFIX": env_str("CHANNELS_PREFIX", "nas")}  # fmt: skip
    ),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so a bad token gets 401 with a WWW-Authenticate header, not 403.
        "experiments.api.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Hostile-input limits (experiments/api/limits.py): body size, JSON depth, overflowing numbers.
    "DEFAULT_PARSER_CLASSES": [
        "experiments.api.limits.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "experiments.api.limits.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"signin": SIGNIN_RATE},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NAS Studio API",
    "DESCRIPTION": "Projects, datasets, experiments and trials of NAS Studio.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Static and uploaded files ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at start-up when it is missing
# plotly.js comes from the installed plotly package (never a CDN): its package_data folder is
# served under the "plotly" prefix, so templates use {% static 'plotly/plotly.min.js' %}.
_PLOTLY_DATA = Path(next(iter(importlib.util.find_spec("plotly").submodule_search_locations))) / "package_data"
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", _PLOTLY_DATA)]
WHITENOISE_USE_FINDERS = True  # serve straight from the apps' and packages' folders in dev
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
STORAGES = {
    # Datasets and model artifacts go through Django's storage API, so S3-style storage is a
    # setting (FILE_STORAGE_BACKEND=storages.backends.s3.S3Storage) shared by all machines.
    "default": {"BACKEND": env_str("FILE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 200 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads stream to a temporary file
# Hostile-input limits: a request body other than a file upload (JSON, forms) over this many bytes
# is refused with 413, JSON nested deeper than API_JSON_MAX_DEPTH with 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)
API_JSON_MAX_DEPTH = env_int("API_JSON_MAX_DEPTH", 64)

# Security (check --deploy passes when DEBUG is off) --------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG and env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = not DEBUG and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
