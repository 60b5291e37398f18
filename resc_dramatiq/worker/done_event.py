"""An actor's ``done_event`` template: ``${name}`` fields filled from the message's arguments.

The syntax is the rules' own (see :mod:`resc_dramatiq.rules.templates`): literal text
and ``${name}``, one pass, nothing evaluated. The form of earlier releases, ``{name}``,
still loads with a :class:`DeprecationWarning` that shows the new spelling.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import MiddlewareError

from ..errors import ConfigError
from ..rules.templates import VARIABLE, Template

#: The old ``{name}`` field (not the ``{`` of a ``${name}``).
OLD_FIELD = re.compile(r"(?<!\$)\{(\w+)\}")


class InvalidDoneEvent(ConfigError, MiddlewareError):
    """Raised when an actor's ``done_event`` option is not a ``${name}`` template."""


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """A compiled ``done_event`` template."""

    template: Template

    @classmethod
    def compile(cls, source: object, *, where: str, fn: Callable[..., Any]) -> DoneEvent:
        """Check the template against the actor function ``fn``'s parameters."""
        if not isinstance(source, str):
            raise InvalidDoneEvent(f"{where}: {source!r} is not a text of ${{name}} fields")
        if OLD_FIELD.search(source):
            if VARIABLE.search(source):
                raise InvalidDoneEvent(f"{where}: {source!r} mixes {{name}} and ${{name}} fields")
            new = OLD_FIELD.sub(r"${\1}", source)
            warnings.warn(
                f"{where}: {source!r} uses the old {{name}} fields; write {new!r} "
                "(the ${name} syntax of rules)",
                DeprecationWarning,
                stacklevel=2,
            )
            source = new
        if "{" in VARIABLE.sub("", source) or "}" in VARIABLE.sub("", source):
            raise InvalidDoneEvent(
                f"{where}: {source!r} is not a done event template; use literal text and "
                "${name} fields"
            )
        template = Template.compile(source)
        unknown = _unknown_names(template.names, fn)
        if unknown:
            raise InvalidDoneEvent(
                f"{where}: {source!r} names {', '.join(unknown)}, which the function "
                f"{fn.__qualname__} does not take"
            )
        return cls(template)

    def render(self, fn: Callable[..., Any], args: Any, kwargs: Mapping[str, Any]) -> str:
        """The event of a call of ``fn``; raise TypeError or RuleError when they do not fit."""
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        values = {name: str(value) for name, value in bound.arguments.items()}
        return self.template.render(values)


def _unknown_names(names: tuple[str, ...], fn: Callable[..., Any]) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    known = {p.name for p in params}
    return [n for n in names if n not in known]
