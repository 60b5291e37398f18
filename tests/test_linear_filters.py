"""Specification: what an operator or a caller types is matched in linear time.

``dead list --match``, the dashboard's ``?match=`` and the key names a page may address
(``key=``, ``name=``) once ran on Python's backtracking ``re``: ``(a|a?)+$`` against 22
characters took 1.7 s, doubling per character, and a key name was matched against
``p/.*/.*/.*/todo``, cubic in its length. Now the filters run on RE2 and key names are
matched against the templates' literals without a regex.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from resc_dramatiq.dashboard.context import named_by
from resc_dramatiq.ops.dead import list_dead
from resc_dramatiq.rules.templates import Template
from tests.dashboard_server import DashboardProcess, dashboard, dead_letter, write_rules
from tests.helpers import dead_cli
from tests.test_dead import RULES, SPEC, route

#: Python's re tries 2**n ways on n "a"s before it finds the empty match at the end.
HOSTILE_MATCH = "(a|a?)+$"
HOSTILE_EVENT = "a" * 40 + "!"


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[DashboardProcess]:
    with dashboard(write_rules(tmp_path), redis_url, tmp_path) as running:
        yield running


@pytest.mark.timeout(60)
def test_a_hostile_match_filter_lists_the_dead_letters_at_once(r: redis.Redis) -> None:
    route(r, "/" + HOSTILE_EVENT)
    started = time.perf_counter()
    page = list_dead(r, SPEC, match=HOSTILE_MATCH)
    assert time.perf_counter() - started < 1.0
    assert [letter.text for letter in page.letters] == ["/" + HOSTILE_EVENT]


@pytest.mark.timeout(60)
def test_dead_list_match_with_a_hostile_regex_answers_at_once(
    r: redis.Redis, redis_url: str, write_config: Callable[[str], Path]
) -> None:
    config_file = write_config(json.dumps(RULES))
    route(r, "/" + HOSTILE_EVENT)
    started = time.perf_counter()
    result = dead_cli(redis_url, config_file, "list", "--match", HOSTILE_MATCH, "--json")
    assert time.perf_counter() - started < 1.0
    assert result.exit_code == 0, result.output
    assert HOSTILE_EVENT in result.stdout


def test_dead_list_match_refuses_what_re2_cannot_run(
    redis_url: str, write_config: Callable[[str], Path]
) -> None:
    config_file = write_config(json.dumps(RULES))
    result = dead_cli(redis_url, config_file, "list", "--match", r"(a)\1")
    assert result.exit_code == 2
    assert r"error: --match '(a)\\1': invalid regex: invalid escape sequence: \1" in result.stderr


@pytest.mark.timeout(60)
def test_the_watcher_page_filters_with_a_hostile_match_at_once(
    r: redis.Redis, site: DashboardProcess
) -> None:
    dead_letter(r, HOSTILE_EVENT.encode())
    started = time.perf_counter()
    answer = httpx.get(f"{site.url}/watchers/0", params={"match": HOSTILE_MATCH}, timeout=30)
    # a page, not a match: the bound is generous; Python's re took hours on this event
    assert time.perf_counter() - started < 5.0
    assert answer.status_code == 200
    assert HOSTILE_EVENT in answer.text


def test_the_watcher_page_says_why_it_cannot_run_a_match(
    r: redis.Redis, site: DashboardProcess
) -> None:
    answer = httpx.get(f"{site.url}/watchers/0", params={"match": "a(?=b)"})
    assert answer.status_code == 200
    assert "bad regex: invalid perl operator: (?=" in answer.text


# --- key names against templates -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_long_key_name_is_matched_against_the_templates_at_once() -> None:
    templates = [Template.compile("p/${a}/${b}/${c}/todo")]
    name = "p/" + "/" * 8192 + "x"  # 8 KB: minutes against p/.*/.*/.*/todo with re
    started = time.perf_counter()
    assert not named_by(name, templates)
    assert named_by("p/" + "/" * 8192 + "/todo", templates)
    assert time.perf_counter() - started < 1.0


@pytest.mark.timeout(60)
def test_a_long_key_parameter_answers_at_once(site: DashboardProcess) -> None:
    started = time.perf_counter()
    answer = httpx.get(f"{site.url}/watchers/0/set", params={"key": "/" * 8192}, timeout=30)
    assert time.perf_counter() - started < 5.0
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        ("todo", "todo", True),
        ("todo", "todox", False),
        ("${q}", "", True),  # a variable may be empty, as .* was
        ("out/${q}", "out/", True),
        ("out/${q}", "ou", False),
        ("a${x}a", "a", False),  # the first and the last literal do not overlap
        ("a${x}a", "aa", True),
        ("${x}/${y}/todo", "a/b/c/todo", True),
        ("p/${a}/x/${b}/x", "p/1/x/x", False),
        ("p/${a}/x/${b}/x", "p/1/x/2/x", True),
    ],
)
def test_a_template_can_render_the_names_its_literals_allow(
    template: str, name: str, expected: bool
) -> None:
    assert Template.compile(template).can_render(name) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "/", "ab", "${x}", "${y}"]), max_size=6).map("".join),
    st.text("ab/", max_size=10),
)
def test_key_names_are_matched_as_the_templates_regex_matched_them(source: str, name: str) -> None:
    template = Template.compile(source)
    regex = ".*".join(re.escape(literal) for literal in template.literals)
    assert template.can_render(name) is (re.fullmatch(regex, name, re.DOTALL) is not None)
