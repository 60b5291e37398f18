"""Every fetch is bounded: a deadline for the whole answer (connect, headers, body) and
a cap on its size, read streamed. Hostile services are raw-socket servers that drip
their answers (tests/http_drip.py) or send more than anyone should read."""

from __future__ import annotations

import gzip
import json
import resource
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import FetchError
from resc_dramatiq.rules.fetch import Fetcher, FetchOptions
from resc_dramatiq.rules.ruleset import RuleSet
from tests.fetching import match
from tests.helpers import wait_for
from tests.http_drip import DripServer

MIB = 1 << 20
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def ruleset(*fetch: dict[str, Any]) -> RuleSet:
    rule = {"on": r"^trt/(?P<product>\w+)$", "fetch": list(fetch), "make": {"queue": "q"}}
    return RuleSet.compile(Config.from_data({"watchers": [{"input_queue": "in", "rules": [rule]}]}))


def timed_failure(fetcher: Fetcher, rules: RuleSet) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(FetchError) as caught:
        fetcher(match(rules, "trt/1"))
    return str(caught.value), time.perf_counter() - started


def test_a_server_dripping_its_headers_is_cut_at_the_deadline(fetcher: Fetcher) -> None:
    head = b"HTTP/1.1 200 OK\r\n"
    with DripServer(head=head, drip=b"X-Slow: 1\r\n", interval_s=0.2, max_s=10) as server:
        rules = ruleset(
            {"url": server.url + "/p/${product}", "returns": "r", "timeout_s": 1, "retries": 0}
        )
        error, elapsed_s = timed_failure(fetcher, rules)
    assert error == f"GET {server.url}/p/1: no complete answer within 1 s (after 1 attempt)"
    assert elapsed_s < 3.0  # a per-read timeout let the drip hold the call for 10 s


def test_a_server_dripping_its_body_is_cut_at_the_deadline(fetcher: Fetcher) -> None:
    head = JSON_HEAD + b"Content-Length: 100000\r\n\r\n["
    with DripServer(head=head, drip=b" ", interval_s=0.2, max_s=10) as server:
        rules = ruleset(
            {"url": server.url + "/p/${product}", "returns": "r", "timeout_s": 1, "retries": 0}
        )
        error, elapsed_s = timed_failure(fetcher, rules)
        wait_for(lambda: server.closed_by_client == 1, what="the call stopped, not left on")
    assert error.endswith("no complete answer within 1 s (after 1 attempt)")
    assert elapsed_s < 3.0


def test_each_attempt_has_its_own_deadline(fetcher: Fetcher) -> None:
    head = JSON_HEAD + b"Content-Length: 100000\r\n\r\n["
    with DripServer(head=head, drip=b" ", interval_s=0.1, max_s=10) as server:
        rules = ruleset(
            {"url": server.url + "/p/${product}", "returns": "r", "timeout_s": 0.5, "retries": 1}
        )
        error, elapsed_s = timed_failure(fetcher, rules)
    assert error.endswith("no complete answer within 0.5 s (after 2 attempts)")
    assert server.connections == 2
    assert elapsed_s < 3.0


def test_an_announced_length_over_the_cap_is_refused_before_the_body_is_read(
    fetcher: Fetcher,
) -> None:
    head = JSON_HEAD + f"Content-Length: {300 * MIB}\r\n\r\n".encode()
    with DripServer(head=head, drip=b" " * 65536, interval_s=0, max_bytes=300 * MIB) as server:
        rules = ruleset({"url": server.url + "/p/${product}", "returns": "r"})
        error, _ = timed_failure(fetcher, rules)
    assert error == f"GET {server.url}/p/1: answer over 1 MiB (max_body_bytes 1048576)"
    assert server.sent < 64 * MIB


def test_a_300_mib_answer_is_read_only_up_to_the_cap(fetcher: Fetcher) -> None:
    head = JSON_HEAD + b"Connection: close\r\n\r\n["  # no length: read until it stops
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with DripServer(head=head, drip=b" " * 65536, interval_s=0, max_bytes=300 * MIB) as server:
        rules = ruleset({"url": server.url + "/p/${product}", "returns": "r"})
        error, _ = timed_failure(fetcher, rules)
        wait_for(lambda: server.closed_by_client == 1, what="the client closing the connection")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
    assert error.endswith(": answer over 1 MiB (max_body_bytes 1048576)")
    assert server.sent < 64 * MIB  # the socket buffers' worth past the cap, not 300 MiB
    assert grown_mib < 100  # reading it whole took 960 MiB


def test_max_body_bytes_is_set_per_fetcher(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_request("/big").respond_with_json({"v": "x" * 2000})
    httpserver.expect_request("/fits").respond_with_json({"v": "x" * 980})
    small = {"returns": "r", "max_body_bytes": 1000}
    too_big = ruleset({"url": httpserver.url_for("/big"), **small})
    error, _ = timed_failure(fetcher, too_big)
    assert error.endswith(": answer over 1000 bytes (max_body_bytes 1000)")
    [result] = fetcher(match(ruleset({"url": httpserver.url_for("/fits"), **small}), "trt/1"))
    assert result["r.v"] == "x" * 980


def test_the_default_cap_is_one_mib() -> None:
    rules = ruleset({"url": "http://h/", "returns": "r"})
    assert rules.watchers[0].rules[0].fetch[0].max_body_bytes == MIB


def test_a_gzip_answer_is_decoded(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    body = gzip.compress(json.dumps({"v": "1"}).encode())
    httpserver.expect_request("/p/1").respond_with_data(
        body, headers={"Content-Encoding": "gzip"}, content_type="application/json"
    )
    [result] = fetcher(
        match(ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"}), "trt/1")
    )
    assert result["r.v"] == "1"


def test_a_gzip_bomb_is_cut_at_the_cap_while_it_inflates(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    bomb = gzip.compress(b"[" + b" " * (64 * MIB) + b"]", compresslevel=1)  # an empty array
    assert len(bomb) < MIB
    httpserver.expect_request("/p/1").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json"
    )
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"})
    error, _ = timed_failure(fetcher, rules)
    assert error.endswith(": answer over 1 MiB (max_body_bytes 1048576)")


def test_an_encoding_it_cannot_decode_is_refused(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_request("/p/1").respond_with_data(
        b"\x00", headers={"Content-Encoding": "br"}, content_type="application/json"
    )
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"})
    error, _ = timed_failure(fetcher, rules)
    assert error.endswith(": the response is br-encoded, which is not decoded here")


def test_calls_to_a_stuck_service_do_not_delay_calls_to_another(
    httpserver: HTTPServer,
) -> None:
    answered: list[float] = []

    def healthy(request: Request) -> Response:
        answered.append(time.perf_counter())
        return Response(json.dumps({"v": "1"}), content_type="application/json")

    httpserver.expect_request("/ok/1").respond_with_handler(healthy)
    fetcher = Fetcher(options=FetchOptions(max_concurrency=2))
    head = JSON_HEAD + b"Content-Length: 100000\r\n\r\n["
    try:
        with DripServer(head=head, drip=b" ", interval_s=0.1, max_s=10) as server:
            stuck = fetch_rule(server.url + "/s/${product}", timeout_s=1, retries=0)
            ok = fetch_rule(httpserver.url_for("/ok/1"), on=r"^trt/1$")
            config = {"watchers": [{"input_queue": "in", "rules": [stuck, ok]}]}
            rules = RuleSet.compile(Config.from_data(config)).watchers[0]
            # four calls to the stuck service (twice its limit), and one to a healthy one
            matches = [m for i in range(4) for m in rules.matches(f"trt/{i}")]
            fetcher.prefetch(matches)
            wait_for(lambda: len(server.closed_at) == 4, what="the stuck calls stopped")
            cut_at = list(server.closed_at)
    finally:
        fetcher.close()
    assert len(answered) == 1
    assert answered[0] < min(cut_at)  # the healthy call did not wait behind them


def fetch_rule(url: str, on: str = r"^trt/(?P<product>\w+)$", **fetch: Any) -> dict[str, Any]:
    return {"on": on, "fetch": [{"url": url, "returns": "r", **fetch}], "make": {"queue": "q"}}
