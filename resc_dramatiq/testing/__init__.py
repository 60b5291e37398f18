"""The testing kit: run an app's pipeline in tests the way it runs in production.

* :func:`session_server` / :class:`RescTestServer`: one real server per test session
  (the ``embedded`` extra's), flushed per test;
* :class:`Pipeline`: the app's actors on a real ``dramatiq.Worker`` in-process, done
  events routed in the worker or by an in-process router on its production loop,
  :meth:`~Pipeline.run_until_idle` until nothing is pending (else :class:`NotIdle`
  says what is where), and readers of what happened (:class:`Run`\\ s, counters, dead
  letters);
* :class:`TestClock`: the pipeline's time, moved by :meth:`~Pipeline.advance` through
  schedule ticks, join deadlines and Dramatiq's delays, without sleeping;
* :func:`made_by`: what an event would make, with no server at all.

Importing it starts nothing and needs no pytest; with pytest, the ``testing`` extra
registers :mod:`.plugin` (fixtures ``resc_server``, ``resc_broker``, ``resc_pipeline``).
See docs/testing.md.
"""

from __future__ import annotations

from .clock import TestClock
from .made import made_by, ruleset_of
from .pending import Pending
from .pipeline import NotIdle, Pipeline
from .recorder import Recorder, Run
from .server import RescTestServer, session_server

__all__ = [
    "NotIdle",
    "Pending",
    "Pipeline",
    "Recorder",
    "RescTestServer",
    "Run",
    "TestClock",
    "made_by",
    "ruleset_of",
    "session_server",
]
