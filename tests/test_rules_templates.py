"""Specification of ``${name}`` templates: split once, filled in one pass, never evaluated."""

from __future__ import annotations

import pytest

from resc_dramatiq.errors import RuleError
from resc_dramatiq.rules.templates import Template


def test_a_template_is_split_into_literals_and_names_once() -> None:
    template = Template.compile("trt/${process_id}/${product_id}")
    assert template.literals == ("trt/", "/", "")
    assert template.names == ("process_id", "product_id")


def test_rendering_joins_literals_and_values() -> None:
    template = Template.compile("trt/${a}/${b}!")
    assert template.render({"a": "1", "b": "2"}) == "trt/1/2!"


def test_a_template_without_variables_is_constant() -> None:
    assert Template.compile("archive").is_constant
    assert not Template.compile("a/${x}").is_constant


def test_the_same_variable_may_appear_twice() -> None:
    assert Template.compile("${x}-${x}").render({"x": "7"}) == "7-7"


def test_dotted_names_are_fetched_fields() -> None:
    assert Template.compile("${child.processId}").names == ("child.processId",)


@pytest.mark.parametrize("text", ["$x", "${}", "${ x }", "${x-y}", "$${", "{x}", "}${"])
def test_text_that_is_not_a_variable_stays_literal(text: str) -> None:
    template = Template.compile(text)
    assert template.names == ()
    assert template.render({}) == text


def test_a_missing_value_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match="variable 'y' has no value for this event"):
        Template.compile("${x}/${y}").render({"x": "1"})


def test_values_are_never_expanded_again() -> None:
    template = Template.compile("${a}")
    assert template.render({"a": "${b}", "b": "no"}) == "${b}"


def test_values_are_not_format_strings() -> None:
    template = Template.compile("${a}")
    assert template.render({"a": "{0.__class__.__mro__}%s"}) == "{0.__class__.__mro__}%s"
