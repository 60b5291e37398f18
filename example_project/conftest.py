"""The example project's tests run on resc_dramatiq's testing kit: one real embedded
server for the session, its URL given to the app before the app is imported."""

from __future__ import annotations

import os

from resc_dramatiq.testing import session_server

os.environ["RESC_REDIS_URL"] = session_server().url
