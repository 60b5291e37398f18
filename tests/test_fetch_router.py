"""Rules with fetchers in the router: real Redis, a real local HTTP server.

Failed calls are retried across batches then dead-lettered with their reason; a slow
service delays neither the events that need no fetch nor other watchers.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from resc_dramatiq import Router, RouterOptions
from resc_dramatiq.config.model import Config
from resc_dramatiq.rules.fetch import Fetcher, FetchOptions
from resc_dramatiq.rules.ruleset import RuleSet
from tests.helpers import one_round
from tests.http_drip import DripServer

FAST = FetchOptions(backoff_first_s=0.01, backoff_cap_s=0.02)
TRT = r"^trt/(?P<process>\w+)/(?P<product>\w+)$"


def children_rule(url: str, **fetch: Any) -> dict[str, Any]:
    """resc's own example: one ``prop`` task per child product of the service."""
    return {
        "name": "children",
        "on": TRT,
        "fetch": [{"url": url, "returns": "c", **fetch}],
        "make": {
            "task": "prop/${process}/${c.child}",
            "queue": "props",
            "set": "props/todo",
        },
    }


NO_FETCH = {
    "name": "plain",
    "on": r"^acq/(?P<id>\d+)$",
    "make": {"task": "ok/${id}", "queue": "oks"},
}


def ruleset(*watchers: dict[str, Any]) -> RuleSet:
    return RuleSet.compile(Config.from_data({"watchers": list(watchers)}))


def dead_entries(r: redis.Redis, dead: str = "in/dead") -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange(dead, 0, -1)]


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    fetcher = Fetcher(options=FAST)
    yield fetcher
    fetcher.close()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of a test, so slow handlers return at once."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def threaded_server(release: threading.Event) -> Iterator[HTTPServer]:
    """An HTTP server that answers concurrent calls concurrently, as real services do."""
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    release.set()
    server.clear()
    server.stop()


def slow_json(
    release: threading.Event, delay_s: float, body: object, started: threading.Event | None = None
) -> Any:
    def handler(request: Request) -> Response:
        if started is not None:
            started.set()
        release.wait(delay_s)  # bounded: at most delay_s, less when the test ends
        return Response(json.dumps(body), content_type="application/json")

    return handler


def test_an_event_becomes_one_task_per_child_product(
    r: redis.Redis, httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/products/456/children").respond_with_json(
        [{"child": "11"}, {"child": "12"}]
    )
    url = httpserver.url_for("/products/${product}/children")
    rules = ruleset({"input_queue": "in", "rules": [children_rule(url)]})
    r.lpush("in", "trt/123/456")
    Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    assert r.lrange("props", 0, -1) == [b"prop/123/12", b"prop/123/11"]
    assert r.zrange("props/todo", 0, -1) == [b"prop/123/11", b"prop/123/12"]
    assert r.llen("in/taken") == 0


def test_an_empty_answer_makes_no_task_and_finishes_the_event(
    r: redis.Redis, httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/products/456/children").respond_with_json([])
    url = httpserver.url_for("/products/${product}/children")
    rules = ruleset({"input_queue": "in", "rules": [children_rule(url)]})
    r.lpush("in", "trt/123/456")
    Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    assert (r.llen("props"), r.llen("in/taken"), r.llen("in/dead")) == (0, 0, 0)


def test_a_failing_service_dead_letters_the_event_with_the_http_status(
    r: redis.Redis, httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/products/456/children").respond_with_data("down", status=503)
    url = httpserver.url_for("/products/${product}/children")
    rule = children_rule(url, retries=1)
    rules = ruleset({"input_queue": "in", "max_attempts": 2, "rules": [rule]})
    r.lpush("in", "trt/123/456")
    Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    [entry] = dead_entries(r)
    assert entry["event"] == "trt/123/456"
    assert entry["attempts"] == 2
    assert entry["error"] == (
        f"FetchError: GET {httpserver.url_for('/products/456/children')}: "
        "HTTP 503 (after 2 attempts)"
    )
    assert len(httpserver.log) == 4  # two batches, two calls each
    assert r.llen("props") == 0


def test_a_response_of_the_wrong_shape_is_the_dead_letter_reason(
    r: redis.Redis, httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/products/456/children").respond_with_data("<html>oops</html>")
    url = httpserver.url_for("/products/${product}/children")
    rules = ruleset({"input_queue": "in", "max_attempts": 1, "rules": [children_rule(url)]})
    r.lpush("in", "trt/123/456")
    Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    [entry] = dead_entries(r)
    assert entry["error"].endswith("/products/456/children: the response is not JSON")


def test_the_secret_header_appears_neither_in_logs_nor_in_dead_letters(
    r: redis.Redis, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/products/456/children").respond_with_data("no", status=401)
    url = httpserver.url_for("/products/${product}/children")
    rule = children_rule(url, headers={"Authorization": "Bearer ${env:CATALOGUE_TOKEN}"})
    rules = ruleset({"input_queue": "in", "max_attempts": 2, "rules": [rule]})
    fetcher = Fetcher.for_ruleset(rules, environ={"CATALOGUE_TOKEN": "tok-4242"}, options=FAST)
    r.lpush("in", "trt/123/456")
    with caplog.at_level(logging.DEBUG):
        Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    fetcher.close()
    [entry] = dead_entries(r)
    assert "HTTP 401" in entry["error"]
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer tok-4242"  # it was sent
    assert caplog.records  # the HTTP client did log the calls
    assert "tok-4242" not in caplog.text
    assert not any(b"tok-4242" in raw for raw in r.lrange("in/dead", 0, -1))


def test_fetches_of_a_batch_run_concurrently(
    r: redis.Redis, threaded_server: HTTPServer, release: threading.Event
) -> None:
    delay_s = 0.4
    threaded_server.expect_request("/products/456/children").respond_with_handler(
        slow_json(release, delay_s, [{"child": "1"}])
    )
    url = threaded_server.url_for("/products/${product}/children")
    rules = ruleset({"input_queue": "in", "rules": [children_rule(url)]})
    events = [f"trt/p{i}/456" for i in range(10)]
    r.lpush("in", *events)
    fetcher = Fetcher(options=FAST)
    started = time.perf_counter()
    Router(ruleset=rules, client=r, expander=fetcher).run_until_idle()
    elapsed_s = time.perf_counter() - started
    fetcher.close()
    assert r.llen("props") == 10
    assert elapsed_s < 4 * delay_s  # one after the other would take 10 x 0.4 s


def test_a_slow_service_delays_the_events_that_need_no_fetch_by_one_timeout_at_most(
    r: redis.Redis, threaded_server: HTTPServer, release: threading.Event
) -> None:
    threaded_server.expect_request("/products/456/children").respond_with_handler(
        slow_json(release, 10.0, [{"child": "1"}])
    )
    url = threaded_server.url_for("/products/${product}/children")
    rule = children_rule(url, timeout_s=0.3, retries=0)
    rules = ruleset({"input_queue": "in", "max_attempts": 5, "rules": [rule, NO_FETCH]})
    r.lpush("in", *[f"trt/p{i}/456" for i in range(20)], *[f"acq/{i}" for i in range(20)])
    fetcher = Fetcher(options=FAST)
    router = Router(ruleset=rules, client=r, expander=fetcher, options=RouterOptions(batch_size=40))
    started = time.perf_counter()
    one_round(router.loops[0])
    elapsed_s = time.perf_counter() - started
    fetcher.close()
    assert r.llen("oks") == 20
    assert r.llen("in") == 20  # the slow ones are sent back for another attempt
    assert elapsed_s < 1.5  # 20 calls x 0.3 s one after the other would take 6 s


def test_a_slow_service_does_not_stall_another_watcher(
    r: redis.Redis, threaded_server: HTTPServer, release: threading.Event
) -> None:
    called = threading.Event()
    threaded_server.expect_request("/products/456/children").respond_with_handler(
        slow_json(release, 10.0, [{"child": "1"}], started=called)
    )
    url = threaded_server.url_for("/products/${product}/children")
    rules = ruleset(
        {"input_queue": "slow", "rules": [children_rule(url, timeout_s=5.0, retries=0)]},
        {"input_queue": "fast", "rules": [NO_FETCH]},
    )
    fetcher = Fetcher(options=FAST)
    router = Router(ruleset=rules, client=r, expander=fetcher, options=RouterOptions(block_s=0.1))
    thread = threading.Thread(target=router.run)
    thread.start()
    try:
        r.lpush("slow", "trt/p/456")
        assert called.wait(2.0), "the slow call never started"
        r.lpush("fast", "acq/1")
        started = time.perf_counter()
        deadline = time.monotonic() + 2.0
        while r.llen("oks") == 0:
            assert time.monotonic() < deadline, "the fast watcher was stalled"
            time.sleep(0.01)
        assert time.perf_counter() - started < 1.0
        assert r.llen("props") == 0  # the slow call is still running
    finally:
        release.set()
        router.stop()
        thread.join(10)
        fetcher.close()
    assert not thread.is_alive()


def test_a_stuck_service_holds_back_no_healthy_fetch_of_the_next_batch(
    r: redis.Redis, threaded_server: HTTPServer
) -> None:
    threaded_server.expect_request(re.compile(r"/h/\d+")).respond_with_handler(
        lambda request: Response(json.dumps({"v": request.path}), content_type="application/json")
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n["
    with DripServer(head=head, drip=b" ", interval_s=0.2, max_s=15) as stuck:
        slow = {
            "name": "slow",
            "on": r"^slow/(?P<id>\d+)$",
            "fetch": [
                {"url": stuck.url + "/s/${id}", "returns": "r", "timeout_s": 1, "retries": 0}
            ],
            "make": {"task": "s/${r.v}", "queue": "slows"},
        }
        fast = {
            "name": "fast",
            "on": r"^fast/(?P<id>\d+)$",
            "fetch": [{"url": threaded_server.url_for("/h/${id}"), "returns": "r"}],
            "make": {"task": "f${r.v}", "queue": "fasts"},
        }
        rules = ruleset({"input_queue": "in", "max_attempts": 1, "rules": [slow, fast]})
        r.lpush("in", *[f"slow/{i}" for i in range(20)])  # the first batch: all stuck
        r.lpush("in", *[f"fast/{i}" for i in range(20)])  # the next one: all healthy
        fetcher = Fetcher(options=FAST)  # 16 calls in flight per watcher and service
        router = Router(
            ruleset=rules, client=r, expander=fetcher, options=RouterOptions(batch_size=20)
        )
        started = time.perf_counter()
        router.run_until_idle()
        elapsed_s = time.perf_counter() - started
        fetcher.close()
    assert sorted(r.lrange("fasts", 0, -1)) == sorted(f"f/h/{i}".encode() for i in range(20))
    dead = dead_entries(r)
    assert sorted(e["event"] for e in dead) == sorted(f"slow/{i}" for i in range(20))
    assert {e["error"].split(": ", 2)[2] for e in dead} == {
        "no complete answer within 1 s (after 1 attempt)"
    }
    assert elapsed_s < 5.0  # one deadline for the stuck batch, then the healthy one
