"""Settings of the ANIMA gateway. Every value comes from the environment (django-environ)
and has a default that works on a laptop; the README has the table."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

# --- where state lives ------------------------------------------------------------------------
if "pytest" in sys.modules and "ANIMA_STATE_DIR" not in os.environ:
    # The test suite never touches the developer's gateway state (token, database, log).
    os.environ["ANIMA_STATE_DIR"] = tempfile.mkdtemp(prefix="anima-test-")
STATE_DIR = Path(env.str("ANIMA_STATE_DIR", default=str(BASE_DIR / ".state"))).expanduser()
STATE_DIR.mkdir(parents=True, exist_ok=True)


def _state_secret(name: str, make) -> str:
    """A secret generated once and kept in the state directory (mode 0600)."""
    path = STATE_DIR / name
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _state_secret("django-secret-key",
                                                                         lambda: secrets.token_urlsafe(48))
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("ANIMA_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "::1"])
CSRF_TRUSTED_ORIGINS = env.list("ANIMA_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "gateway",
    "pairing",
    "cron",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "anima_site.urls"
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
ASGI_APPLICATION = "anima_site.asgi.application"

# --- database and shared state ------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{STATE_DIR / 'gateway.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets readers run beside the single writer; the timeout rides out short write bursts.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Defaults drop messages past 100 per channel and forget groups after a day;
            # the gateway fans out through one channel per process, so size it for bursts.
            # redis-py's default 5 s socket timeout equals channels-redis's 5 s BZPOPMIN, so an
            # idle receive timed out client-side (racing a message the server was handing over):
            # the read timeout must outlast the blocking pop.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "capacity": 100_000,
                       "expiry": 60, "group_expiry": 7 * 86400,
                       "prefix": env.str("ANIMA_REDIS_PREFIX", default="anima")},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": env.str("ANIMA_REDIS_PREFIX", default="anima")}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                  "CONFIG": {"capacity": 100_000, "expiry": 60}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "anima",
                          "OPTIONS": {"MAX_ENTRIES": 100_000}}}

# --- gateway --------------------------------------------------------------------------------------
GATEWAY_TOKEN_FILE = STATE_DIR / "gateway-token"
ANIMA_GATEWAY_TOKEN = env.str("ANIMA_GATEWAY_TOKEN", default="") or (
    GATEWAY_TOKEN_FILE.read_text().strip() if GATEWAY_TOKEN_FILE.exists() else "")
ANIMA_GATEWAY_PASSWORD = env.str("ANIMA_GATEWAY_PASSWORD", default="")
ANIMA_GATEWAY_ROOT_DIALECT = env.str("ANIMA_GATEWAY_ROOT_DIALECT", default="seed")
ANIMA_GATEWAY_TRUSTED_PROXIES = env.list("ANIMA_GATEWAY_TRUSTED_PROXIES", default=[])
ANIMA_GATEWAY_BIND = env.str("ANIMA_GATEWAY_BIND", default="127.0.0.1")
ANIMA_GATEWAY_PORT = env.int("ANIMA_GATEWAY_PORT", default=18789)
ANIMA_MAX_PAYLOAD_BYTES = env.int("ANIMA_MAX_PAYLOAD_BYTES", default=8 * 1024 * 1024)
ANIMA_MAX_BUFFERED_BYTES = env.int("ANIMA_MAX_BUFFERED_BYTES", default=16 * 1024 * 1024)
ANIMA_TICK_INTERVAL_MS = env.int("ANIMA_TICK_INTERVAL_MS", default=30_000)
ANIMA_HANDSHAKE_TIMEOUT_MS = env.int("ANIMA_HANDSHAKE_TIMEOUT_MS", default=10_000)
ANIMA_HEALTH_REFRESH_MS = env.int("ANIMA_HEALTH_REFRESH_MS", default=60_000)
ANIMA_AUTH_RATE_LIMIT = {
    "max_attempts": env.int("ANIMA_AUTH_RATE_LIMIT_MAX_ATTEMPTS", default=10),
    "window_ms": env.int("ANIMA_AUTH_RATE_LIMIT_WINDOW_MS", default=60_000),
    "lockout_ms": env.int("ANIMA_AUTH_RATE_LIMIT_LOCKOUT_MS", default=300_000),
    "exempt_loopback": env.bool("ANIMA_AUTH_RATE_LIMIT_EXEMPT_LOOPBACK", default=True),
}
ANIMA_CONTROL_UI_ALLOWED_ORIGINS = env.list("ANIMA_CONTROL_UI_ALLOWED_ORIGINS", default=[])
ANIMA_NODE_ALLOW_COMMANDS = env.list("ANIMA_NODE_ALLOW_COMMANDS", default=[])
ANIMA_NODE_DENY_COMMANDS = env.list("ANIMA_NODE_DENY_COMMANDS", default=[])
ANIMA_SKIP_CRON = env.bool("ANIMA_SKIP_CRON", default=False)
ANIMA_CRON_LEASE_MS = env.int("ANIMA_CRON_LEASE_MS", default=60_000)
ANIMA_DEFAULT_MODEL = env.str("ANIMA_DEFAULT_MODEL", default="echo/echo")
ANIMA_VERSION = env.str("ANIMA_VERSION", default="0.1.0")
ANIMA_LOG_FILE = Path(env.str("ANIMA_LOG_FILE", default=str(STATE_DIR / "gateway.log")))
# operations (anima.registration.*, wizard.*)
ANIMA_NOXSOFT_AUTH_BASE = env.str("ANIMA_NOXSOFT_AUTH_BASE", default="https://auth.noxsoft.net/api/agents")
ANIMA_NOXSOFT_TIMEOUT_S = env.float("ANIMA_NOXSOFT_TIMEOUT_S", default=10.0)
ANIMA_WIZARD_IDLE_TIMEOUT_S = env.int("ANIMA_WIZARD_IDLE_TIMEOUT_S", default=1800)

# --- the rest of Django -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "line"},
        "file": {"class": "logging.handlers.WatchedFileHandler", "filename": str(ANIMA_LOG_FILE),
                 "formatter": "line"},
    },
    "root": {"handlers": ["console", "file"], "level": env.str("ANIMA_LOG_LEVEL", default="INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
