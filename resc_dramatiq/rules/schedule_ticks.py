"""When a schedule's ticks fall, and which of them are due: pure, on an injected time.

A tick is named by its scheduled time in whole unix seconds (its *epoch*), never by the
moment a router noticed it: two routers that see the same tick agree on its name, so
the store can fire each tick once (see ``store/lua/fire.lua``).

``every_s: N`` ticks on the multiples of N seconds since the unix epoch (every router
agrees without talking). A cron expression ticks as Debian's cron does, through
`cronsim <https://pypi.org/project/cronsim/>`_ (written for Healthchecks to match it):

* a job at a fixed minute and hour (``30 2 * * *``) runs by the wall clock: on the night
  the clock skips 02:00-03:00, the 02:30 run happens at 03:00 (the first minute that
  exists after the gap); on the night it repeats 02:00-03:00, it runs once, at the first
  02:30 (summer time), not again an hour later;
* a job whose minute or hour field starts with ``*`` (``*/15 * * * *``) runs by elapsed
  time: no run in a skipped hour, runs in both passes of a repeated one;
* 6-field expressions (seconds) always run by elapsed time.

:func:`due` applies the ``catch_up`` policy to the ticks after the last one fired.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim

from ..config.schedules import CATCH_UP_LIMIT, cronsim_expression

CatchUp = Literal["none", "last", "all"]


class Ticks(Protocol):
    """The ticks of one schedule."""

    def after(self, epoch: int) -> Iterator[int]:
        """Every tick later than ``epoch``, in order (strictly increasing)."""
        ...

    def back_from(self, epoch: int, n: int) -> int | None:
        """A time before the ``n``-th latest tick at or before ``epoch`` (None: none)."""
        ...


@dataclass(frozen=True, slots=True)
class EveryTicks:
    """Ticks on the multiples of ``every_s`` seconds."""

    every_s: int

    def after(self, epoch: int) -> Iterator[int]:
        """Every multiple of ``every_s`` later than ``epoch``."""
        first = (epoch // self.every_s + 1) * self.every_s
        return itertools.count(first, self.every_s)

    def back_from(self, epoch: int, n: int) -> int | None:
        """Just before the ``n``-th latest multiple at or before ``epoch``."""
        return (epoch // self.every_s - (n - 1)) * self.every_s - 1


@dataclass(frozen=True, slots=True)
class CronTicks:
    """Ticks of a cron expression (5 fields, or 6 with the seconds last) in ``zone``."""

    cron: str
    zone: ZoneInfo

    def after(self, epoch: int) -> Iterator[int]:
        """Every tick later than ``epoch``, as Debian's cron runs them (see the module)."""
        start = datetime.fromtimestamp(epoch, self.zone)
        previous = epoch
        # cronsim walks wall-clock times for fixed-time jobs: starting inside a repeated
        # hour it may give a time before the start; such a time was the earlier pass's
        for moment in CronSim(cronsim_expression(self.cron), start):
            tick = int(moment.timestamp())
            if tick > previous:
                previous = tick
                yield tick

    def back_from(self, epoch: int, n: int) -> int | None:
        """A time at or before the ``n``-th latest tick (cronsim walking backwards; the
        ticks themselves are always taken from :meth:`after`, so that both agree)."""
        start = datetime.fromtimestamp(epoch + 1, self.zone)
        backwards = CronSim(cronsim_expression(self.cron), start, reverse=True)
        found = None
        for moment in itertools.islice(backwards, n + 1):  # one more: DST may shift one
            found = int(moment.timestamp())
        return None if found is None else found - 1


def between(ticks: Ticks, after: int, until: int) -> Iterator[int]:
    """The ticks later than ``after`` and at or before ``until``."""
    return itertools.takewhile(lambda t: t <= until, ticks.after(after))


def next_ticks(ticks: Ticks, after: int, count: int) -> list[int]:
    """The ``count`` first ticks later than ``after``."""
    return list(itertools.islice(ticks.after(after), count))


@dataclass(frozen=True, slots=True)
class Due:
    """What a schedule should fire now."""

    fire: tuple[int, ...]  # ticks, oldest first
    #: True when missed ticks were left out (catch_up none or last, or over the limit).
    skipped: bool = False


def due(
    ticks: Ticks,
    *,
    last: int | None,
    now: int,
    catch_up: CatchUp,
    grace_s: int,
    limit: int = CATCH_UP_LIMIT,
) -> Due:
    """The ticks to fire at ``now`` when ``last`` is the last tick fired (None: never).

    A tick is *on time* while ``now`` is at most ``grace_s`` after it: on-time ticks
    always fire. A tick later than ``last`` but older than that was *missed* (no router
    ran, or none could reach Redis): ``none`` drops the missed ticks, ``last`` fires the
    newest of them once, ``all`` fires them all, oldest first, at most ``limit`` (the
    newest ones). A schedule never fired has missed nothing: it fires its newest on-time
    tick, if any.
    """
    horizon = now - grace_s - 1  # the newest time a missed tick can have
    on_time = list(between(ticks, horizon if last is None else max(last, horizon), now))
    if last is None:  # a new schedule: only its current tick, if on time
        return Due(tuple(on_time[-1:]))
    if last >= horizon:
        return Due(tuple(on_time))
    first_missed = next(iter(ticks.after(last)), None)
    if first_missed is None or first_missed > horizon:
        return Due(tuple(on_time))
    if catch_up == "none":
        return Due(tuple(on_time), skipped=True)
    wanted = 1 if catch_up == "last" else limit
    start = ticks.back_from(horizon, wanted)
    if start is None or start < last:
        start = last
    missed: deque[int] = deque(between(ticks, start, horizon), maxlen=wanted)
    return Due((*missed, *on_time), skipped=bool(missed) and first_missed < missed[0])
