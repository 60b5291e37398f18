"""A make entry: one task a rule makes, a raw list push (resc) or a Dramatiq message.

Shared by rules (``make``), joins (``expired``) and schedules' targets' checks.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

INPUT_TASK = "${input_task}"

#: Keys of a make entry that only mean something for a Dramatiq message.
DRAMATIQ_ONLY = ("args", "kwargs", "delay_ms", "options", "release", "data", "members")

#: Message options the router writes itself.
RESERVED_OPTIONS = {
    "redis_message_id": "the router sets it",
    "resc": "the router sets it",
    "eta": "use delay_ms",
}


class FrozenModel(BaseModel):
    """A config model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MakeSpec(FrozenModel):
    """One task a rule makes: a raw list push (resc) or a Dramatiq message (``actor``)."""

    task: str = INPUT_TASK
    queue: str | None = None
    set: str | None = None
    actor: str | None = None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    delay_ms: int | None = Field(default=None, ge=0, le=7 * 24 * 3600 * 1000)
    options: dict[str, Any] = Field(default_factory=dict)
    release: Literal["taken", "done"] = "taken"
    #: the event's payload fields passed as keyword arguments (a list of field names), or
    #: the whole payload as one (its name); see rules/data.py
    data: tuple[str, ...] | str | None = None
    #: a join's make: the members' payloads as one keyword argument of this name, a
    #: mapping member -> payload (None for a member without one; see docs/joins.md)
    members: str | None = Field(default=None, pattern=r"^[A-Za-z_]\w*$")
    ttl_s: int | None = Field(default=None, gt=0)
    #: the tasks this entry queues form this group (a template): a join with
    #: ``expect: "fan-out"`` waits for their done events (see config/joins.py)
    group: str | None = Field(default=None, min_length=1)

    @field_validator("args", "kwargs", "options")
    @classmethod
    def _json_values_only(cls, value: Any) -> Any:
        try:  # what the router cannot encode must be refused now, not per event
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"only JSON values can go in a message: {e}") from None
        return value

    @field_validator("options")
    @classmethod
    def _no_reserved_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(options) & set(RESERVED_OPTIONS))
        if reserved:
            raise ValueError(
                "; ".join(f"{k!r} is reserved: {RESERVED_OPTIONS[k]}" for k in reserved)
            )
        return options

    @model_validator(mode="after")
    def _target_keys(self) -> MakeSpec:
        problem = _raw_problem(self) if self.actor is None else None
        if problem is not None:
            raise ValueError(problem)
        return self


def _raw_problem(make: MakeSpec) -> str | None:
    if make.queue is None:
        return "a raw make entry needs 'queue' (or 'actor' for Dramatiq)"
    given = [k for k in DRAMATIQ_ONLY if k in make.model_fields_set]
    return f"{', '.join(given)} only apply to an 'actor' target" if given else None
