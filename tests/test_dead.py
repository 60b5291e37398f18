"""Dead letters: listed newest first, requeued or dropped atomically, by library and CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from resc_dramatiq import Config, Router, RuleSet, WrongType
from resc_dramatiq.ops.dead import ALL, drop, list_dead, requeue, select
from resc_dramatiq.store.keys import WatcherKeys
from tests.helpers import dead_cli

#: ``<queue>/<task>``: an event with nothing before the slash makes an empty queue name,
#: a run-time failure, dead-lettered at once (max_attempts 1).
RULES = {
    "watchers": [
        {
            "input_queue": "in",
            "max_attempts": 1,
            "rules": [
                {
                    "name": "split",
                    "on": "(?s)^(?P<q>[^/]*)/(?P<t>.*)$",
                    "make": {"task": "${t}", "queue": "${q}"},
                }
            ],
        },
        {"input_queue": "other", "rules": [{"on": "^x$", "make": {"queue": "o"}}]},
    ]
}
RULESET = RuleSet.compile(Config.from_data(RULES))
SPEC = RULESET.watchers[0].spec
KEYS = WatcherKeys.of(SPEC, "")


def route(r: redis.Redis, *events: bytes | str) -> None:
    """Push each event and run the router until idle, one event per run (one per batch)."""
    for event in events:
        r.lpush("in", event)
        Router(ruleset=RULESET, client=r).run_until_idle()


def texts(r: redis.Redis, match: str | None = None) -> list[str]:
    """The event texts of the first page of dead letters, newest first."""
    return [x.text for x in list_dead(r, SPEC, match=match).letters]


@pytest.fixture
def config_file(write_config: Callable[[str], Path]) -> Path:
    return write_config(json.dumps(RULES))


# --- the library ------------------------------------------------------------------------


def test_a_failing_event_is_listed_with_its_rule_error_and_attempts(r: redis.Redis) -> None:
    route(r, "/lost", "good/task")
    [letter] = list_dead(r, SPEC).letters
    assert (letter.text, letter.event, letter.rule) == ("/lost", b"/lost", "split")
    assert "empty queue name" in letter.error
    assert letter.attempts == 1
    assert letter.at_s > 0
    assert letter.entry == r.lindex("in/dead", 0)


def test_dead_letters_are_listed_newest_first(r: redis.Redis) -> None:
    route(r, "/e0", "/e1", "/e2")
    assert texts(r) == ["/e2", "/e1", "/e0"]


def test_a_listing_is_paginated_by_offset_and_limit(r: redis.Redis) -> None:
    route(r, *[f"/e{i}" for i in range(5)])
    first = list_dead(r, SPEC, limit=2)
    assert [x.text for x in first.letters] == ["/e4", "/e3"]
    assert (first.size, first.next_offset) == (5, 2)
    last = list_dead(r, SPEC, offset=4, limit=2)
    assert [x.text for x in last.letters] == ["/e0"]
    assert last.next_offset is None


def test_match_keeps_the_events_its_regex_finds(r: redis.Redis) -> None:
    route(r, "/a1", "/b1", "/a2", "/b2")
    assert texts(r, match="^/a") == ["/a2", "/a1"]


def test_match_looks_at_most_scan_entries_and_says_where_to_go_on(r: redis.Redis) -> None:
    route(r, "/a1", "/b1", "/b2", "/b3")
    page = list_dead(r, SPEC, match="^/a", scan=2)
    assert page.letters == ()
    assert page.next_offset == 2
    rest = list_dead(r, SPEC, match="^/a", offset=2, scan=2)
    assert [x.text for x in rest.letters] == ["/a1"]


def test_requeue_puts_the_events_back_on_the_input_list_and_off_the_dead_list(
    r: redis.Redis,
) -> None:
    route(r, "/x", "/y")
    assert requeue(r, SPEC, list_dead(r, SPEC).letters) == 2
    assert r.llen("in/dead") == 0
    assert sorted(r.lrange("in", 0, -1)) == [b"/x", b"/y"]


def test_a_requeue_onto_an_input_key_of_another_type_moves_nothing(r: redis.Redis) -> None:
    route(r, "/x")
    r.delete("in")
    r.set("in", "not a list")
    with pytest.raises(WrongType, match="'in' holds a string, not a list; nothing was moved"):
        requeue(r, SPEC, ALL)
    assert texts(r) == ["/x"]  # still dead, not lost


def test_requeued_events_are_routed_again_and_dead_letter_again_when_nothing_was_fixed(
    r: redis.Redis,
) -> None:
    route(r, "/x")
    requeue(r, SPEC, ALL)
    Router(ruleset=RULESET, client=r).run_until_idle()
    assert r.llen("in") == 0
    assert texts(r) == ["/x"]
    assert r.hget("in/stats", "split|dead") == b"2"


def test_requeue_of_all_keeps_the_order_the_events_failed_in(r: redis.Redis) -> None:
    route(r, "/e0", "/e1", "/e2")
    assert requeue(r, KEYS, ALL) == 3
    assert r.lrange("in", 0, -1) == [b"/e2", b"/e1", b"/e0"]  # the router takes /e0 first


def test_requeue_and_dry_run_of_all_go_through_every_page(r: redis.Redis) -> None:
    events = [f"/e{i}" for i in range(1200)]  # more than two pages of LRANGE
    r.lpush("in", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()
    assert requeue(r, SPEC, ALL, dry_run=True) == 1200
    assert len(select(r, SPEC, lambda x: x.text.endswith("7"))) == 120
    assert requeue(r, SPEC, ALL) == 1200
    assert r.llen("in/dead") == 0
    assert sorted(r.lrange("in", 0, -1)) == sorted(e.encode() for e in events)


def test_requeue_forgets_the_events_failed_attempts(r: redis.Redis) -> None:
    route(r, "/x")
    r.hset("in/attempts", "/x", 7)
    requeue(r, SPEC, ALL)
    assert r.hget("in/attempts", "/x") is None


def test_drop_removes_only_the_chosen_letters_and_pushes_nothing(r: redis.Redis) -> None:
    route(r, "/keep", "/gone")
    chosen = select(r, SPEC, lambda x: x.text == "/gone")
    assert drop(r, SPEC, chosen) == 1
    assert texts(r) == ["/keep"]
    assert r.llen("in") == 0


def test_a_dry_run_counts_and_changes_nothing(r: redis.Redis) -> None:
    route(r, "/x", "/y")
    before = r.lrange("in/dead", 0, -1)
    assert requeue(r, SPEC, ALL, dry_run=True) == 2
    assert drop(r, SPEC, list_dead(r, SPEC).letters, dry_run=True) == 2
    assert r.lrange("in/dead", 0, -1) == before
    assert r.llen("in") == 0


def test_a_letter_already_moved_is_not_moved_again(r: redis.Redis) -> None:
    route(r, "/x")
    letters = list_dead(r, SPEC).letters
    assert requeue(r, SPEC, letters) == 1
    assert requeue(r, SPEC, letters) == 0
    assert drop(r, SPEC, letters) == 0
    assert r.lrange("in", 0, -1) == [b"/x"]


def test_two_concurrent_requeues_of_the_same_letters_push_each_event_exactly_once(
    r: redis.Redis,
) -> None:
    events = [f"/e{i}" for i in range(300)]
    r.lpush("in", *events)
    Router(ruleset=RULESET, client=r).run_until_idle()
    letters = list_dead(r, SPEC, limit=1000).letters
    assert len(letters) == 300
    start = threading.Barrier(2)
    moved: list[int] = []

    def operator() -> None:
        start.wait()
        moved.append(requeue(r, SPEC, letters))

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(moved) == 300
    assert sorted(r.lrange("in", 0, -1)) == sorted(e.encode() for e in events)
    assert r.llen("in/dead") == 0


def test_non_utf8_event_bytes_round_trip_through_requeue_byte_for_byte(r: redis.Redis) -> None:
    event = b"/caf\xe9\xff\x00"
    route(r, event)
    [letter] = list_dead(r, SPEC).letters
    assert letter.event == event
    requeue(r, SPEC, [letter])
    assert r.lrange("in", 0, -1) == [event]


def test_an_entry_that_is_not_a_dead_letter_stands_for_its_own_bytes(r: redis.Redis) -> None:
    r.lpush("in/dead", b"pushed by hand")
    [letter] = list_dead(r, SPEC).letters
    assert (letter.event, letter.error) == (b"pushed by hand", "not a dead-letter entry")
    requeue(r, SPEC, [letter])
    assert r.lrange("in", 0, -1) == [b"pushed by hand"]


# --- the commands -----------------------------------------------------------------------


def test_dead_list_shows_each_letter_and_the_count(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, "/a", "/b")
    result = dead_cli(redis_url, config_file, "list", "--watcher", "in")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "in/dead: 2 dead letters, 2 shown"
    assert "/b  rule 'split', 1 attempt: " in lines[1]
    assert "/a  rule 'split'" in lines[2]


def test_dead_list_shows_non_printable_events_as_their_repr(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, b"/caf\xe9", "/tab\there")
    result = dead_cli(redis_url, config_file, "list", "--watcher", "in")
    assert "'/tab\\there'" in result.stdout
    assert "b'/caf\\xe9'" in result.stdout


def test_dead_list_json_gives_every_field_and_where_to_go_on(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, "/a", "/b", "/c")
    result = dead_cli(redis_url, config_file, "list", "--watcher", "in", "--json", "--limit", "2")
    [watcher] = json.loads(result.stdout)
    assert (watcher["dead_queue"], watcher["size"], watcher["next_offset"]) == ("in/dead", 3, 2)
    assert [x["event"] for x in watcher["letters"]] == ["/c", "/b"]
    assert watcher["letters"][0]["rule"] == "split"


def test_dead_requeue_by_event_says_how_many_were_requeued(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, "/a", "/b", "/c")
    result = dead_cli(redis_url, config_file, "requeue", "/a", "/c", "--watcher", "in")
    assert result.exit_code == 0, result.output
    assert result.stdout == "in/dead: 2 requeued\n"
    assert sorted(r.lrange("in", 0, -1)) == [b"/a", b"/c"]


def test_dead_requeue_match_and_drop_all(r: redis.Redis, redis_url: str, config_file: Path) -> None:
    route(r, "/a1", "/b1", "/a2")
    requeued = dead_cli(redis_url, config_file, "requeue", "--match", "a", "--watcher", "in")
    assert requeued.stdout == "in/dead: 2 requeued\n"
    assert dead_cli(redis_url, config_file, "drop", "--all", "--watcher", "in").stdout == (
        "in/dead: 1 dropped\n"
    )
    assert r.llen("in/dead") == 0
    assert sorted(r.lrange("in", 0, -1)) == [b"/a1", b"/a2"]


def test_dead_drop_dry_run_says_what_would_be_dropped_and_changes_nothing(
    r: redis.Redis, redis_url: str, config_file: Path
) -> None:
    route(r, "/a")
    result = dead_cli(redis_url, config_file, "drop", "--all", "--dry-run")
    assert result.stdout.splitlines() == [
        "in/dead: 1 would be dropped",
        "other/dead: 0 would be dropped",
    ]
    assert r.llen("in/dead") == 1


def test_a_bad_regex_exits_2_with_a_message(redis_url: str, config_file: Path) -> None:
    result = dead_cli(redis_url, config_file, "list", "--match", "(")
    assert result.exit_code == 2
    assert "error: --match '(': invalid regex: missing ): (" in result.stderr


def test_an_unknown_watcher_exits_2_naming_the_known_ones(
    redis_url: str, config_file: Path
) -> None:
    result = dead_cli(redis_url, config_file, "list", "--watcher", "nope")
    assert result.exit_code == 2
    assert "error: --watcher 'nope': no such watcher; known: 'in', 'other'" in result.stderr


def test_requeue_needs_exactly_one_selection(redis_url: str, config_file: Path) -> None:
    for args in ((), ("--all", "/a"), ("--all", "--match", "x")):
        result = dead_cli(redis_url, config_file, "requeue", *args)
        assert result.exit_code == 2
        assert "give exactly one of --all, --match REGEX or EVENT..." in result.stderr


def test_an_unreachable_redis_exits_1_naming_it(config_file: Path) -> None:
    result = dead_cli("redis://127.0.0.1:1/0", config_file, "requeue", "--all")
    assert result.exit_code == 1
    assert "error: Redis at redis://127.0.0.1:1/0: ConnectionError" in result.stderr
