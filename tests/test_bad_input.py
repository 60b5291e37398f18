"""Bad input reaches the router safely: odd bytes, huge events, hostile text, bad rules."""

from __future__ import annotations

import json
import time

import pytest
import redis

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.ruleset import RuleSet

ECHO = """{"listener_channel": "notes", "watchers": [{"input_queue": "in", "rules": [
  {"name": "echo", "on": "(?s)^(?P<body>.*)$",
   "make": {"task": "t/${body}", "queue": "out", "set": "seen"}}]}]}"""


def router_for(text: str, r: redis.Redis, **options: int) -> Router:
    ruleset = RuleSet.compile(Config.from_text(text))
    return Router(ruleset=ruleset, client=r, options=RouterOptions(**options))  # type: ignore[arg-type]


def test_events_that_are_not_utf8_are_dead_lettered_with_their_byte_never_merged(
    r: redis.Redis,
) -> None:
    r.lpush("in", b"ok/\xff", b"ok/\xfe", b"ok/\xc3\xa9")
    router_for(ECHO, r).run_until_idle()
    assert r.lrange("out", 0, -1) == ["t/ok/é".encode()]
    assert r.zrange("seen", 0, -1) == ["t/ok/é".encode()]
    dead = [json.loads(e) for e in r.lrange("in/dead", 0, -1)]
    assert sorted(bytes.fromhex(d["event_hex"]) for d in dead) == [b"ok/\xfe", b"ok/\xff"]
    assert {d["error"] for d in dead} == {"event is not valid UTF-8 at byte 3"}
    assert r.llen("in") == r.llen("in/taken") == 0


def test_a_one_megabyte_event_is_routed_whole(r: redis.Redis) -> None:
    event = "x" * (1 << 20)
    r.lpush("in", event)
    router_for(ECHO, r).run_until_idle()
    assert r.lrange("out", 0, -1) == [f"t/{event}".encode()]


HOSTILE = [
    "${body}",
    "${input_task}{0}{body!r}",
    "100%s%d%%",
    "line1\nline2\r\n",
    "]]--[[ '); redis.call('FLUSHALL') --",
    "\\0\x00nul",
    "9" * 5000,
]


@pytest.mark.parametrize("event", HOSTILE)
def test_hostile_text_is_copied_verbatim_never_interpreted(r: redis.Redis, event: str) -> None:
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("notes")
    r.lpush("in", event, "marker")
    router_for(ECHO, r).run_until_idle()
    assert r.lrange("out", 0, -1) == [b"t/marker", f"t/{event}".encode()]
    assert r.zscore("seen", f"t/{event}") is not None
    lines = []
    deadline = time.monotonic() + 5
    while len(lines) < 4 and time.monotonic() < deadline:
        if (message := pubsub.get_message(timeout=0.2)) is not None:
            lines.append(message["data"])
    pubsub.close()
    assert f"in/taken TRIGGER {event} -> t/{event}".encode() in lines
    assert f"in/taken DONE {event}".encode() in lines


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("pattern", "event", "matching"),
    [
        (r"^(a|a)*$", "a" * 40 + "!", "a" * 40),  # 41 characters: minutes with Python's re
        (r"^(.*a){12}$", "a" * 40 + "!", "a" * 40),  # 175 s with Python's re
        (r"^a*a*a*a*a*a*b", "a" * 200, "aab"),  # 141 s with Python's re
        (r"^(a+)+$", "a" * 10_000 + "!", "a" * 40),
    ],
)
def test_a_crafted_event_does_not_stall_the_router_on_a_catastrophic_pattern(
    r: redis.Redis, pattern: str, event: str, matching: str
) -> None:
    text = json.dumps(
        {"watchers": [{"input_queue": "in", "rules": [{"on": pattern, "make": {"queue": "q"}}]}]}
    )
    router = router_for(text, r)
    r.lpush("in", event, matching)
    started = time.perf_counter()
    router.run_until_idle()
    assert time.perf_counter() - started < 1.0
    assert r.lrange("q", 0, -1) == [matching.encode()]


def test_a_template_that_makes_an_empty_queue_name_dead_letters_the_event(
    r: redis.Redis,
) -> None:
    text = """{"watchers": [{"input_queue": "in", "max_attempts": 2, "rules": [
      {"name": "split", "on": "^(?P<q>[^/]*)/(?P<t>.*)$",
       "make": {"task": "${t}", "queue": "${q}"}}]}]}"""
    r.lpush("in", "/orphan", "good/task")
    router = router_for(text, r)
    router.run_until_idle()
    assert r.lrange("good", 0, -1) == [b"task"]
    [entry] = [json.loads(e) for e in r.lrange("in/dead", 0, -1)]
    assert entry["event"] == "/orphan"
    assert "empty queue name" in entry["error"]
    assert entry["attempts"] == 2


def test_a_very_large_batch_commits_in_one_go(r: redis.Redis) -> None:
    text = """{"watchers": [{"input_queue": "in", "unmatched_queue": "in/unmatched", "rules": [
      {"on": "^e/(?P<n>\\\\d+)$", "make": {"task": "t/${n}", "queue": "out", "set": "seen"}}]}]}"""
    events = [f"e/{i}" for i in range(30_000)] + [f"other/{i}" for i in range(10_000)]
    for start in range(0, len(events), 5_000):
        r.lpush("in", *events[start : start + 5_000])
    router = router_for(text, r, batch_size=50_000)
    assert router.run_until_idle() == 40_000
    assert r.llen("out") == 30_000
    assert r.zcard("seen") == 30_000
    assert r.llen("in/unmatched") == 10_000
    assert r.lrange("out", -1, -1) == [b"t/0"]  # first in, first routed
