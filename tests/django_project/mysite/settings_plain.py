"""The project's settings with a broker that lacks Completion (a mistake to report)."""

from mysite.settings import *  # noqa: F403

DRAMATIQ_BROKER = {
    **DRAMATIQ_BROKER,  # noqa: F405
    "MIDDLEWARE": ["dramatiq.middleware.Retries"],
}
