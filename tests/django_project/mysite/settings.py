"""A minimal Django project with django_dramatiq: the broker is a RedisBroker on
``$REDIS_URL`` with resc_dramatiq's Completion before Retries (the tests' Redis)."""

import os

SECRET_KEY = "tests only"
USE_TZ = True
INSTALLED_APPS = ["django_dramatiq", "media"]
DATABASES: dict[str, dict[str, str]] = {}

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": os.environ["REDIS_URL"]},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "resc_dramatiq.Completion",  # before Retries: it sees the verdict Retries reached
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
    ],
}
