"""``${name}`` templates, resc's syntax.

A template is split once, at load, into literal parts and variable names; rendering
joins the parts with the values. One pass, no recursion, no evaluation: a value that
itself contains ``${x}`` is inserted verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import RuleError

VARIABLE = re.compile(r"\$\{([\w.]+)\}")


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled ``${name}`` template."""

    source: str
    literals: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def compile(cls, source: str) -> Template:
        """Split ``source`` into literals and variable names."""
        pieces = VARIABLE.split(source)
        return cls(source=source, literals=tuple(pieces[0::2]), names=tuple(pieces[1::2]))

    @property
    def is_constant(self) -> bool:
        """True when the template has no variable."""
        return not self.names

    def render(self, variables: Mapping[str, str]) -> str:
        """Fill the template; raise :class:`RuleError` when a variable has no value."""
        if not self.names:
            return self.source
        out = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            try:
                out.append(variables[name])
            except KeyError:
                raise RuleError(f"variable {name!r} has no value for this event") from None
            out.append(literal)
        return "".join(out)
