"""``${name}`` templates, resc's syntax.

A template is split once, at load, into literal parts and variable names; rendering
joins the parts with the values. One pass, no recursion, no evaluation: a value that
itself contains ``${x}`` is inserted verbatim.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import RuleError

VARIABLE = re.compile(r"\$\{([\w.]+)\}")


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled ``${name}`` template."""

    source: str
    literals: tuple[str, ...]
    names: tuple[str, ...]
    #: ``str.format`` of the literals with ``{}`` for each variable (braces escaped).
    _format: Callable[..., str] = field(init=False, repr=False, compare=False)
    #: The values of ``names`` in a mapping, as a tuple.
    _values: Callable[[Mapping[str, str]], tuple[str, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        escaped = [literal.replace("{", "{{").replace("}", "}}") for literal in self.literals]
        object.__setattr__(self, "_format", "{}".join(escaped).format)
        values: Callable[[Mapping[str, str]], tuple[str, ...]]
        if len(self.names) > 1:
            values = operator.itemgetter(*self.names)  # a tuple
        elif self.names:  # itemgetter of one name gives the value itself
            name = self.names[0]
            values = lambda variables: (variables[name],)  # noqa: E731
        else:
            values = lambda variables: ()  # noqa: E731
        object.__setattr__(self, "_values", values)

    @classmethod
    def compile(cls, source: str) -> Template:
        """Split ``source`` into literals and variable names."""
        pieces = VARIABLE.split(source)
        return cls(source=source, literals=tuple(pieces[0::2]), names=tuple(pieces[1::2]))

    @property
    def is_constant(self) -> bool:
        """True when the template has no variable."""
        return not self.names

    def can_render(self, name: str) -> bool:
        """Whether some values of the variables render ``name`` (a value may be anything).

        No regex: the literals are looked for in order, each at its leftmost place after
        the previous one, the first at the start and the last at the end. Leftmost is
        never wrong (a later place leaves less room, never more), so this is exact, and
        its time is linear in ``name`` for a given template (a regex ``a.*b.*c`` would
        backtrack: cubic in the length of a hostile name).
        """
        first, last = self.literals[0], self.literals[-1]
        if not self.names:
            return name == first
        end = len(name) - len(last)
        if end < len(first) or not name.startswith(first) or not name.endswith(last):
            return False
        position = len(first)
        for literal in self.literals[1:-1]:
            found = name.find(literal, position, end)
            if found < 0:
                return False
            position = found + len(literal)
        return True

    def render(self, variables: Mapping[str, str]) -> str:
        """Fill the template; raise :class:`RuleError` when a variable has no value."""
        if not self.names:
            return self.source
        try:
            return self._format(*self._values(variables))
        except KeyError as e:
            raise RuleError(f"variable {e.args[0]!r} has no value for this event") from None
