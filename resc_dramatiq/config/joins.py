"""A rule's ``join``: its make fires once, when a group has collected its expected members.

::

    join: {
      group: "roll/${roll}"                # the group an event belongs to (a template)
      member: "${stage}"                   # its identity in the group (default: the event)
      expect: ["cut", "weigh", "inspect"]  # member templates, a number, a template giving
                                           # a number, or "fan-out"
      deadline_s: 600                      # optional: not complete 600 s after its first
      expired: { task: "late/${roll}", queue: "late" }   # member, fire this once
      ttl_s: 86400                         # a closed group's tombstone lives this long
    }

``expect: "fan-out"`` waits for the members a make with ``group:`` recorded (the tasks
it queued, in the same atomic step). A rule on a failure list with ``join: {group: ...,
fail: true}`` fails the open group it names: its own make fires once, the join's never.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, StrictInt, StrictStr, field_validator, model_validator

from .makes import INPUT_TASK, FrozenModel, MakeSpec

#: ``expect``'s value for a group whose members a make's ``group:`` recorded.
FAN_OUT = "fan-out"

#: What ``expect`` may be, for error messages.
EXPECTATIONS = (
    'give a list of member templates, a number, a template that gives a number ("${count}")'
    f" or {FAN_OUT!r}"
)

#: A closed group's tombstone: one day by default.
DEFAULT_TTL_S = 24 * 3600


class JoinSpec(FrozenModel):
    """A rule's join: which group an event belongs to, as which member, and when the
    group is complete; or, with ``fail``, the group a failure event fails."""

    group: str = Field(min_length=1)
    member: str = INPUT_TASK
    expect: tuple[StrictStr, ...] | StrictInt | StrictStr | None = None
    deadline_s: float | None = Field(default=None, gt=0, le=365 * 24 * 3600)
    expired: tuple[MakeSpec, ...] = ()
    ttl_s: int = Field(default=DEFAULT_TTL_S, gt=0)
    fail: bool = False

    @field_validator("expired", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("expect", mode="before")
    @classmethod
    def _expectation_kind(cls, value: Any) -> Any:
        fine = isinstance(value, list | tuple | str) or value is None
        if not fine and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"{value!r} is no expectation: {EXPECTATIONS}")
        if isinstance(value, list | tuple) and not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected members are templates (strings): {EXPECTATIONS}")
        return value

    @field_validator("expect")
    @classmethod
    def _expectation(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("a group expects at least 1 member")
        if isinstance(value, tuple):
            if not value:
                raise ValueError("a list of expected members cannot be empty")
            if len(set(value)) != len(value):
                raise ValueError("the expected members must differ from each other")
        if isinstance(value, str) and value != FAN_OUT and "${" not in value:
            if not value.isdecimal():
                raise ValueError(f"{value!r} is no expectation: {EXPECTATIONS}")
            return int(value)
        return value

    @model_validator(mode="after")
    def _fail_or_join(self) -> JoinSpec:
        if self.fail:
            given = sorted(
                {"member", "expect", "deadline_s", "expired", "ttl_s"} & self.model_fields_set
            )
            if given:
                raise ValueError(
                    f"a rule that fails a group names only its group: {', '.join(given)} "
                    "belong to the join rule"
                )
            return self
        if self.expect is None:
            raise ValueError(f"a join needs 'expect': {EXPECTATIONS}")
        if self.expired and self.deadline_s is None:
            raise ValueError("'expired' fires at the deadline: give 'deadline_s' too")
        if self.expect == FAN_OUT and self.member != INPUT_TASK:
            raise ValueError(
                f"a {FAN_OUT!r} join's members are the tasks its fan-out queued: leave "
                f"'member' out (it is {INPUT_TASK})"
            )
        return self

    @property
    def fan_out(self) -> bool:
        """True when the group's members are those a fan-out recorded."""
        return self.expect == FAN_OUT


@dataclass(frozen=True, kw_only=True, eq=False)  # each declaration is its own
class Join:
    """A join written in code: ``@on_done(pattern, join=Join(group=..., expect=...))``
    on the actor that the completed group sends. The fields are the config's ``join``
    keys (``expired``: one make entry as a dict, or a list of them)."""

    group: str
    member: str = INPUT_TASK
    expect: list[str] | tuple[str, ...] | int | str | None = None
    deadline_s: float | None = None
    expired: dict[str, Any] | list[dict[str, Any]] | None = None
    ttl_s: int = DEFAULT_TTL_S

    def data(self) -> dict[str, Any]:
        """The join as config data (only what was given, so the config's defaults hold)."""
        found: dict[str, Any] = {"group": self.group, "member": self.member}
        if self.expect is not None:
            found["expect"] = list(self.expect) if isinstance(self.expect, tuple) else self.expect
        if self.deadline_s is not None:
            found["deadline_s"] = self.deadline_s
        if self.expired is not None:
            found["expired"] = self.expired
        if self.ttl_s != DEFAULT_TTL_S:
            found["ttl_s"] = self.ttl_s
        return found
