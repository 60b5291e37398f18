"""The project's settings with Completion given as an object: the worker routes the
``@on_done`` rules itself (no router)."""

from mysite.settings import *  # noqa: F403
from resc_dramatiq import Completion

DRAMATIQ_BROKER = {
    **DRAMATIQ_BROKER,  # noqa: F405
    "MIDDLEWARE": [Completion(route_inline=True), "dramatiq.middleware.Retries"],
}
