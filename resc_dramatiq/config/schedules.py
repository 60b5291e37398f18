"""The ``schedules`` of a config: root events fired on a cron expression or an interval.

::

    schedules:
      - {name: nightly export, cron: "30 2 * * *", timezone: Europe/Paris,
         event: "export/${date}", queue: global/done}
      - {name: heartbeat, every_s: 1, event: "tick/${epoch}"}

A cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with
the seconds as the sixth; it is read in ``timezone`` (an IANA name, UTC by default).
Each schedule is checked here, once: the expression, the zone, the variables of its
templates (only the tick's time variables and ``name`` exist) and its target.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The variables of a schedule's templates: the tick's time, in the schedule's zone.
TICK_VARIABLES = ("epoch", "iso", "date", "time", "hour", "minute", "name")

#: Most ticks ``catch_up: all`` fires after an outage (the newest ones).
CATCH_UP_LIMIT = 100

#: ``${name}`` as rules/templates.py reads it (config validates before rules compile).
_VARIABLE = re.compile(r"\$\{([\w.]+)\}")


def cronsim_expression(cron: str) -> str:
    """``cron`` in cronsim's field order: a sixth field (seconds) moves to the front."""
    fields = cron.split()
    return " ".join([fields[5], *fields[:5]]) if len(fields) == 6 else " ".join(fields)


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` saying so when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (an IANA name such as 'Europe/Paris')"
        ) from None


class ScheduleSpec(BaseModel):
    """One schedule: when (``cron`` or ``every_s``), what (``event``), where (a target)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    cron: str | None = None
    every_s: int | None = Field(default=None, ge=1, le=366 * 24 * 3600)
    timezone: str = "UTC"
    event: str = "${name}/${epoch}"
    queue: str | None = None  # None: the first watcher's input list (or the actor's queue)
    actor: str | None = None
    kwargs: dict[str, Any] | None = None
    catch_up: Literal["none", "last", "all"] = "none"
    grace_s: int = Field(default=60, ge=0, le=24 * 3600)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is None:
            return None
        fields = cron.split()
        if len(fields) not in (5, 6):
            raise ValueError(
                f"invalid cron expression {cron!r}: 5 fields (minute hour day month weekday)"
                " or 6 (then seconds)"
            )
        try:
            CronSim(cronsim_expression(cron), datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as e:
            raise ValueError(f"invalid cron expression {cron!r}: {e}") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, name: str) -> str:
        zone(name)
        return name

    @field_validator("event")
    @classmethod
    def _known_variables(cls, event: str) -> str:
        _check_variables(event)
        return event

    @field_validator("kwargs")
    @classmethod
    def _json_kwargs(cls, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
        if kwargs is None:
            return None
        try:
            json.dumps(kwargs, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"only JSON values can go in a message: {e}") from None
        _check_variables(json.dumps(kwargs))
        return kwargs

    @model_validator(mode="after")
    def _one_time_and_target(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give either 'cron' or 'every_s'")
        if self.kwargs is not None and self.actor is None:
            raise ValueError("'kwargs' only applies to an 'actor' target")
        if self.queue is not None and _VARIABLE.search(self.queue):
            raise ValueError("'queue' is a list name, not a template")
        return self


def _check_variables(template: str) -> None:
    unknown = [n for n in _VARIABLE.findall(template) if n not in TICK_VARIABLES]
    if unknown:
        raise ValueError(
            f"unknown variable ${{{unknown[0]}}}; available: {', '.join(TICK_VARIABLES)}"
        )


def unique_names(schedules: tuple[ScheduleSpec, ...]) -> tuple[ScheduleSpec, ...]:
    """``schedules`` unchanged; ``ValueError`` when two share a name (their state would)."""
    seen: set[str] = set()
    for schedule in schedules:
        if schedule.name in seen:
            raise ValueError(f"two schedules are named {schedule.name!r}; names must be unique")
        seen.add(schedule.name)
    return schedules
