"""The fetch layer against a real local HTTP server: resc's fetcher semantics, and
what it does better (URL encoding, timeouts, retries, shapes, secret headers)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from resc_dramatiq.config.model import Config
from resc_dramatiq.errors import ConfigError, FetchError
from resc_dramatiq.rules.fetch import Fetcher, encode
from resc_dramatiq.rules.ruleset import RuleSet
from tests.fetching import FAST, match


def ruleset(*fetch: dict[str, Any], on: str = r"^trt/(?P<process>\w+)/(?P<product>.+)$") -> RuleSet:
    rule = {"on": on, "fetch": list(fetch), "make": {"task": "t", "queue": "q"}}
    return RuleSet.compile(Config.from_data({"watchers": [{"input_queue": "in", "rules": [rule]}]}))


def test_an_array_of_objects_gives_one_variable_set_per_object(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/products/1/children").respond_with_json(
        [{"child": "11"}, {"child": "12"}]
    )
    rules = ruleset({"url": httpserver.url_for("/products/${product}/children"), "returns": "c"})
    results = fetcher(match(rules, "trt/p1/1"))
    assert [r["c.child"] for r in results] == ["11", "12"]
    assert all(r["process"] == "p1" for r in results)


def test_an_object_gives_one_variable_set(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_request("/p/1").respond_with_json({"name": "a", "size": 3})
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "info"})
    [result] = fetcher(match(rules, "trt/x/1"))
    assert (result["info.name"], result["info.size"]) == ("a", "3")


def test_only_top_level_strings_and_numbers_become_variables(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    body = {"s": "x", "i": 7, "f": 1.5, "b": True, "n": None, "l": [1], "o": {"k": "v"}}
    httpserver.expect_request("/p/1").respond_with_json(body)
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"})
    [result] = fetcher(match(rules, "trt/x/1"))
    fetched = {k: v for k, v in result.items() if k.startswith("r.")}
    assert fetched == {"r.s": "x", "r.i": "7", "r.f": "1.5"}


def test_the_rules_own_variables_win_over_fetched_ones(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/p/1").respond_with_json({"v": "fetched"})
    on = r"^trt/(?P<process>\w+)/(?P<product>\d+)$"
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"}, on=on)
    [m] = rules.watchers[0].matches("trt/x/1")
    m.variables["r.v"] = "own"  # a rule variable with the same name as a fetched one
    [result] = fetcher(m)
    assert result["r.v"] == "own"


def test_an_empty_array_gives_no_variable_set(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_request("/p/1").respond_with_json([])
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"})
    assert fetcher(match(rules, "trt/x/1")) == []


def test_several_fetchers_add_up_their_results_as_resc_does(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/a").respond_with_json([{"v": "1"}, {"v": "2"}])
    httpserver.expect_request("/b").respond_with_json({"w": "3"})
    rules = ruleset(
        {"url": httpserver.url_for("/a"), "returns": "a"},
        {"url": httpserver.url_for("/b"), "returns": "b"},
    )
    results = fetcher(match(rules, "trt/x/1"))
    fetched = [{k: v for k, v in r.items() if "." in k} for r in results]
    assert fetched == [{"a.v": "1"}, {"a.v": "2"}, {"b.w": "3"}]


@pytest.mark.parametrize("value", ["../../admin", "x?admin=1", "x#y", "a@evil.example:80", "%2F"])
def test_an_event_cannot_change_the_host_or_the_path_of_the_call(
    httpserver: HTTPServer, fetcher: Fetcher, value: str
) -> None:
    seen: list[str] = []

    def record(request: Request) -> Response:
        seen.append(request.environ["RAW_URI"])
        return Response(json.dumps({"ok": "1"}), content_type="application/json")

    httpserver.expect_request("/products/" + value + "/children").respond_with_handler(record)
    rules = ruleset({"url": httpserver.url_for("/products/${product}/children"), "returns": "r"})
    [result] = fetcher(match(rules, f"trt/x/{value}"))
    assert result["r.ok"] == "1"
    assert seen == [f"/products/{quote(value, safe='')}/children"]  # one segment, same host


def test_a_dot_segment_value_is_encoded_so_it_cannot_climb_the_path() -> None:
    assert encode("..") == "%2E%2E"
    assert encode("1.5") == "1.5"


def test_a_server_error_is_retried_then_succeeds(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_ordered_request("/p/1").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/p/1").respond_with_json({"v": "1"})
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r", "retries": 1})
    [result] = fetcher(match(rules, "trt/x/1"))
    assert result["r.v"] == "1"


def test_after_the_last_retry_the_error_carries_the_http_status(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/p/1").respond_with_data("busy", status=503)
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r", "retries": 2})
    with pytest.raises(FetchError, match=r"HTTP 503 \(after 3 attempts\)"):
        fetcher(match(rules, "trt/x/1"))
    assert len(httpserver.log) == 3


def test_a_client_error_is_not_retried(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    httpserver.expect_request("/p/1").respond_with_data("no", status=404)
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r", "retries": 2})
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher(match(rules, "trt/x/1"))
    assert len(httpserver.log) == 1


def test_a_refused_connection_is_a_fetch_error(fetcher: Fetcher) -> None:
    rules = ruleset({"url": "http://127.0.0.1:9/p/${product}", "returns": "r", "retries": 0})
    with pytest.raises(FetchError, match="ConnectError"):
        fetcher(match(rules, "trt/x/1"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>", "the response is not JSON"),
        ("NaN", "the response is not JSON"),
        ("42", "the response is a JSON number, not an object or an array of objects"),
        ('"x"', "the response is a JSON string, not an object or an array of objects"),
        ('[{"a": "1"}, 3]', "item 1 of the array is a JSON number"),
        ('[["a"]]', "item 0 of the array is a JSON array"),
    ],
)
def test_a_response_of_the_wrong_shape_says_why(
    httpserver: HTTPServer, fetcher: Fetcher, body: str, reason: str
) -> None:
    httpserver.expect_request("/p/1").respond_with_data(body, content_type="application/json")
    rules = ruleset({"url": httpserver.url_for("/p/${product}"), "returns": "r"})
    with pytest.raises(FetchError) as caught:
        fetcher(match(rules, "trt/x/1"))
    assert str(caught.value) == f"GET {httpserver.url_for('/p/1')}: {reason}"


def test_a_header_reads_its_secret_from_the_environment(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/p/1", headers={"Authorization": "Bearer s3cret"}).respond_with_json(
        {"v": "1"}
    )
    rules = ruleset(
        {
            "url": httpserver.url_for("/p/${product}"),
            "returns": "r",
            "headers": {"Authorization": "Bearer ${env:API_TOKEN}"},
        }
    )
    fetcher = Fetcher.for_ruleset(rules, environ={"API_TOKEN": "s3cret"}, options=FAST)
    try:
        [result] = fetcher(match(rules, "trt/x/1"))
    finally:
        fetcher.close()
    assert result["r.v"] == "1"


def test_an_unset_environment_variable_is_refused_at_start_with_its_location() -> None:
    rules = ruleset(
        {"url": "http://h/", "returns": "r", "headers": {"Authorization": "Bearer ${env:NOPE}"}}
    )
    with pytest.raises(ConfigError) as caught:
        Fetcher.for_ruleset(rules, environ={})
    assert caught.value.problems == [
        "<config>: watchers[0].rules[0].fetch[0].headers.Authorization: "
        "environment variable NOPE is not set"
    ]


def test_a_rule_variable_in_a_header_is_refused_at_start() -> None:
    rules = ruleset({"url": "http://h/", "returns": "r", "headers": {"X-Product": "${product}"}})
    with pytest.raises(ConfigError, match=r"headers take \$\{env:NAME\} only"):
        Fetcher.for_ruleset(rules, environ={})


@pytest.mark.parametrize(
    "url",
    [
        "http://${h}/products/${p}",
        "http://cat.example:${p}/products",
        "http://${h}.cat.example/products",
        "http://user:${p}@cat.example/products",
        "${h}://cat.example/products",
        "${h}/products",
    ],
)
def test_a_variable_in_a_fetch_urls_scheme_host_or_port_is_refused_at_load(url: str) -> None:
    rule = {
        "name": "acq",
        "on": r"^acq/(?P<h>[^/]+)/(?P<p>\d+)$",
        "fetch": [{"url": url, "returns": "r"}],
        "make": {"task": "t", "queue": "q"},
    }
    with pytest.raises(ConfigError) as caught:
        Config.from_data({"watchers": [{"input_queue": "in", "rules": [rule]}]})
    [problem] = caught.value.problems
    assert problem.startswith(
        f"<config>: watchers[0].rules[0].fetch: rule 'acq', fetch[0].url {url!r}: "
    )


def test_a_fetch_url_is_http_or_https() -> None:
    with pytest.raises(ConfigError, match=r"starts with a fixed http:// or https://"):
        ruleset({"url": "file:///etc/passwd", "returns": "r"})


def test_variables_stay_allowed_in_a_fetch_urls_path_and_query(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    seen: list[str] = []

    def record(request: Request) -> Response:
        seen.append(request.environ["RAW_URI"])
        return Response(json.dumps({"v": "1"}), content_type="application/json")

    httpserver.expect_request("/p/a/b").respond_with_handler(record)
    rules = ruleset({"url": httpserver.url_for("/p/${product}") + "?q=${product}", "returns": "r"})
    [result] = fetcher(match(rules, "trt/x/a/b"))
    assert result["r.v"] == "1"
    assert seen == ["/p/a%2Fb?q=a%2Fb"]  # one path segment, one query value
