"""``@on_done``: rules in code, checked when decorating, recorded in a registry."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from resc_dramatiq.errors import ConfigError
from resc_dramatiq.worker.registry import DEFAULT_WATCHER, Registry, default_task

ACQ = r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    """Actors need a broker to be declared on; nothing here talks to Redis."""
    b = StubBroker()
    yield b
    b.close()


def test_it_returns_the_actor_unchanged_and_records_a_rule(
    reg: Registry, broker: StubBroker
) -> None:
    @dramatiq.actor(broker=broker, queue_name="treatments")
    def treat(process_id: str, product_id: str) -> None:
        pass

    decorated = reg.on_done(ACQ, set="products/${product_id}/todo")(treat)

    assert decorated is treat
    [rule] = reg.rules
    assert (rule.pattern, rule.set, rule.watcher) == (
        ACQ,
        "products/${product_id}/todo",
        DEFAULT_WATCHER,
    )
    assert rule.actor_on(broker) is treat


def test_it_works_below_the_actor_decorator_too(reg: Registry, broker: StubBroker) -> None:
    @dramatiq.actor(broker=broker)
    @reg.on_done(ACQ)
    def treat(process_id: str, product_id: str) -> None:
        pass

    [rule] = reg.rules
    assert rule.actor is None
    assert rule.actor_on(broker) is treat


def test_a_rule_belongs_only_to_the_broker_of_its_actor(reg: Registry, broker: StubBroker) -> None:
    @reg.on_done(ACQ)
    @dramatiq.actor(broker=broker)
    def treat(process_id: str, product_id: str) -> None:
        pass

    assert reg.rules[0].actor_on(StubBroker()) is None


def test_a_required_parameter_no_group_provides_is_refused(reg: Registry) -> None:
    with pytest.raises(ConfigError) as e:

        @reg.on_done(r"^acq/(?P<process_id>\d+)$")
        def treat(process_id: str, product_id: str) -> None:
            pass

    message = str(e.value)
    assert "test_on_done" in message and "treat" in message
    assert r"(?P<process_id>\\d+)" in message
    assert "required parameter(s) product_id given by no named group" in message


def test_a_group_that_is_no_parameter_is_refused(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="named group\\(s\\) product_id are no parameter"):

        @reg.on_done(ACQ)
        def treat(process_id: str) -> None:
            pass


def test_parameters_with_defaults_need_no_group(reg: Registry) -> None:
    @reg.on_done(r"^acq/(?P<process_id>\d+)$")
    def treat(process_id: str, priority: int = 0) -> None:
        pass

    assert reg.rules[0].groups == ("process_id",)


def test_a_function_taking_any_keyword_accepts_every_group(reg: Registry) -> None:
    @reg.on_done(ACQ)
    def treat(**groups: str) -> None:
        pass

    assert reg.rules[0].groups == ("process_id", "product_id")


def test_an_invalid_regex_is_refused(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="invalid regex"):

        @reg.on_done(r"^acq/(?P<process_id>\d+$")
        def treat(process_id: str) -> None:
            pass


def test_a_template_with_an_unknown_variable_is_refused(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="set uses unknown variable\\(s\\) product"):

        @reg.on_done(ACQ, set="products/${product}/todo")
        def treat(process_id: str, product_id: str) -> None:
            pass


def test_release_must_be_taken_or_done(reg: Registry) -> None:
    with pytest.raises(ConfigError, match="release must be"):

        @reg.on_done(ACQ, release="later")  # type: ignore[arg-type]
        def treat(process_id: str, product_id: str) -> None:
            pass


def test_the_default_task_is_the_actor_name_and_the_groups() -> None:
    assert (
        default_task("treat", ("process_id", "product_id")) == "treat/${process_id}/${product_id}"
    )
    assert default_task("audit", ()) == "audit/${input_task}"
