"""Specification: Dramatiq targets become messages as Dramatiq's Redis broker writes them."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder

from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.ids import new_id
from resc_dramatiq.rules.messages import RESC_OPTION, Envelope, build_message
from resc_dramatiq.rules.model import Task
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import tasks_of

PAYLOAD_KEYS = {
    "queue_name",
    "actor_name",
    "args",
    "kwargs",
    "options",
    "message_id",
    "message_timestamp",
}
ACQ = r"^acq/(?P<process_id>\d+)/(?P<product_id>\d+)$"


def task_for(make: dict[str, Any], event: str = "acq/12/34") -> Task:
    data = {"watchers": [{"input_queue": "in", "rules": [{"on": ACQ, "make": make}]}]}
    [task] = tasks_of(RuleSet.compile(Config.from_data(data)).watchers[0], event)
    return task


def build(make: dict[str, Any], now_ms: int = 1_700_000_000_000) -> Envelope:
    return build_message(task_for(make), now_ms=now_ms, done_queue="in")


def decode(envelope: Envelope) -> dramatiq.Message[Any]:
    return dramatiq.Message.decode(envelope.payload)


# --- the payload ----------------------------------------------------------------------


def test_the_payload_decodes_with_dramatiq() -> None:
    message = decode(build({"actor": "treat"}))
    assert (message.actor_name, message.queue_name) == ("treat", "default")


def test_the_payload_has_exactly_dramatiqs_keys() -> None:
    assert set(json.loads(build({"actor": "treat"}).payload)) == PAYLOAD_KEYS


def test_the_timestamp_is_now_in_milliseconds() -> None:
    assert decode(build({"actor": "treat"}, now_ms=1_234)).message_timestamp == 1_234


def test_message_id_and_redis_message_id_are_distinct_uuid4s() -> None:
    envelope = build({"actor": "treat"})
    message = decode(envelope)
    redis_id = message.options["redis_message_id"]
    assert envelope.redis_message_id == redis_id != message.message_id
    assert uuid.UUID(redis_id).version == uuid.UUID(message.message_id).version == 4


def test_ids_are_unique_across_many_messages() -> None:
    task = task_for({"actor": "treat"})
    ids: set[str] = set()
    for _ in range(5_000):
        message = decode(build_message(task, now_ms=0, done_queue=None))
        ids |= {message.message_id, message.options["redis_message_id"]}
    assert len(ids) == 10_000


def test_ids_can_be_made_from_many_threads_at_once() -> None:
    made: list[str] = []
    errors: list[BaseException] = []

    def make_ids() -> None:
        try:
            made.extend(new_id() for _ in range(20_000))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=make_ids) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(made)) == 160_000


@pytest.fixture
def recording_encoder() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    class Recording(JSONEncoder):
        def encode(self, data: dict[str, Any]) -> bytes:
            seen.append(data)
            return super().encode(data)

    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(Recording())
    try:
        yield seen
    finally:
        dramatiq.set_encoder(previous)


def test_the_payload_is_encoded_with_dramatiqs_global_encoder(
    recording_encoder: list[dict[str, Any]],
) -> None:
    envelope = build({"actor": "treat"})
    [data] = recording_encoder
    assert data["message_id"] == json.loads(envelope.payload)["message_id"]


# --- targets ----------------------------------------------------------------------------


def test_actor_and_queue_come_from_the_make_entry() -> None:
    envelope = build({"actor": "treat", "queue": "treatments"})
    message = decode(envelope)
    assert (message.actor_name, message.queue_name, envelope.queue_name) == (
        "treat",
        "treatments",
        "treatments",
    )


def test_the_queue_is_a_template() -> None:
    assert decode(build({"actor": "treat", "queue": "trt_${process_id}"})).queue_name == "trt_12"


def test_kwargs_default_to_the_named_groups() -> None:
    message = decode(build({"actor": "treat"}))
    assert (message.args, message.kwargs) == ((), {"process_id": "12", "product_id": "34"})


def test_kwargs_are_templates() -> None:
    message = decode(build({"actor": "treat", "kwargs": {"product": "p-${product_id}"}}))
    assert message.kwargs == {"product": "p-34"}


def test_non_string_kwargs_pass_through() -> None:
    kwargs = {"n": 3, "ratio": 0.5, "on": True, "none": None}
    assert decode(build({"actor": "treat", "kwargs": kwargs})).kwargs == kwargs


def test_nested_kwargs_are_filled_at_every_depth() -> None:
    kwargs = {"meta": {"ids": ["${process_id}", 7, {"p": "${product_id}"}]}}
    message = decode(build({"actor": "treat", "kwargs": kwargs}))
    assert message.kwargs == {"meta": {"ids": ["12", 7, {"p": "34"}]}}


def test_args_are_templates_and_then_kwargs_default_to_none() -> None:
    message = decode(build({"actor": "treat", "args": ["${product_id}", 2, ["${process_id}"]]}))
    assert (message.args, message.kwargs) == (("34", 2, ["12"]), {})


def test_args_and_kwargs_can_both_be_given() -> None:
    message = decode(build({"actor": "treat", "args": ["${product_id}"], "kwargs": {"k": 1}}))
    assert (message.args, message.kwargs) == (("34",), {"k": 1})


def test_delay_goes_to_the_delay_queue_with_an_eta_in_milliseconds() -> None:
    envelope = build({"actor": "treat", "queue": "work", "delay_ms": 1_500}, now_ms=10_000)
    message = decode(envelope)
    assert envelope.queue_name == message.queue_name == "work.DQ"
    assert message.options["eta"] == 11_500


def test_no_delay_means_no_eta() -> None:
    assert "eta" not in decode(build({"actor": "treat"})).options


def test_options_are_copied_into_the_message() -> None:
    message = decode(build({"actor": "treat", "options": {"max_retries": 1, "time_limit": 5}}))
    assert (message.options["max_retries"], message.options["time_limit"]) == (1, 5)


def test_building_a_message_leaves_the_compiled_options_alone() -> None:
    task = task_for({"actor": "treat", "options": {"max_retries": 1}})
    build_message(task, now_ms=0, done_queue="in")
    assert task.make.target.options == {"max_retries": 1}


def test_the_resc_option_carries_task_set_release_and_done_queue() -> None:
    make = {"actor": "treat", "task": "trt/${product_id}", "set": "s/${product_id}"}
    message = decode(build({**make, "release": "done"}))
    assert message.options[RESC_OPTION] == {
        "task": "trt/34",
        "set": "s/34",
        "release": "done",
        "done": "in",
    }


def test_release_defaults_to_taken_and_set_to_none() -> None:
    option = decode(build({"actor": "treat"})).options[RESC_OPTION]
    assert (option["release"], option["set"], option["task"]) == ("taken", None, "acq/12/34")
