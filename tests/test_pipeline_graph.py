"""The pipeline graph: its nodes and edges from a config (a join, a fan-out, done lists
feeding back, an app's actors), its layout by Graphviz's dot, hostile names drawn as
text, a huge config capped, and a clear message when dot is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from resc_dramatiq import Completion, Config, RuleSet
from resc_dramatiq.dashboard.app_facts import app_facts
from resc_dramatiq.dashboard.graph_drawing import Figures, draw
from resc_dramatiq.dashboard.graph_layout import _run_dot
from resc_dramatiq.dashboard.pipeline_graph import Graph, build_graph
from resc_dramatiq.dashboard.render import environment

#: A fan-out (one treatment per product), its join (a report per process), a rule that
#: fails the process's group on the failure list, and a raw list for resc workers.
PIPELINE: dict[str, Any] = {
    "watchers": [
        {
            "input_queue": "global/done",
            "rules": [
                {
                    "name": "treat each product",
                    "on": r"^acq/(?P<p>\d+)/(?P<n>\d+)$",
                    "make": {"actor": "treat", "task": "trt/${p}/${n}", "group": "proc/${p}"},
                },
                {
                    "name": "report a process",
                    "on": r"^trt/(?P<p>\d+)/\d+$",
                    "join": {
                        "group": "proc/${p}",
                        "expect": "fan-out",
                        "deadline_s": 60,
                        "expired": {"task": "late/${p}", "queue": "late"},
                    },
                    "make": {"actor": "report", "task": "report/${p}"},
                },
                {"name": "archive", "on": r"^report/(?P<p>\d+)$", "make": {"queue": "archive"}},
            ],
        },
        {
            "input_queue": "global/done/failed",
            "rules": [
                {
                    "name": "a treatment failed",
                    "on": r"^trt/(?P<p>\d+)/\d+$",
                    "join": {"group": "proc/${p}", "fail": True},
                },
            ],
        },
    ]
}
QUEUES = {"treat": "treat", "report": "report"}


def graph_of(data: dict[str, Any], **more: Any) -> Graph:
    return build_graph(RuleSet.compile(Config.from_data(data), actor_queues=QUEUES), **more)


def named(graph: Graph) -> set[tuple[str, str, str]]:
    """The edges as (tail's name, kind, head's name)."""
    return {(graph.node(e.tail).name, e.kind, graph.node(e.head).name) for e in graph.edges}


def test_a_join_is_a_merge_point_its_fan_out_a_group_and_done_events_come_back() -> None:
    graph = graph_of(PIPELINE)
    kinds = {n.name: n.kind for n in graph.nodes}
    assert kinds["report a process"] == "join"
    assert kinds["a treatment failed"] == "fail"
    assert (kinds["treat"], kinds["report"], kinds["archive"]) == ("actor", "actor", "queue")
    assert named(graph) >= {
        ("global/done", "matched", "treat each product"),
        ("treat each product", "fan-out", "treat"),
        ("treat each product", "group", "report a process"),
        ("treat each product", "group", "a treatment failed"),
        ("treat", "done", "global/done"),  # a rule-made message is done on its watcher
        ("treat", "failed", "global/done/failed"),  # watched: its failures come back too
        ("global/done", "matched", "report a process"),
        ("report a process", "queued", "report"),
        ("report a process", "expired", "late"),
        ("global/done/failed", "matched", "a treatment failed"),
        ("archive", "done", "global/done"),  # the resc worker contract
    }


def test_edges_carry_the_counter_of_their_rate() -> None:
    graph = graph_of(PIPELINE)
    counters = {(graph.node(e.head).name, e.kind): (e.watcher, e.counter) for e in graph.edges}
    assert counters["report a process", "matched"] == (0, "report a process|matched")
    assert counters["treat", "fan-out"] == (0, "treat each product|queued")
    assert counters["late", "expired"] == (0, "report a process|expired")
    assert counters["global/done", "done"] == (None, None)  # no counter says how many


def test_an_app_actor_with_a_done_event_feeds_completions_done_list() -> None:
    broker = StubBroker()
    broker.add_middleware(Completion(done_queue="global/done"), before=Retries)
    dramatiq.actor(
        lambda p, n: None,
        broker=broker,
        actor_name="acquire",
        queue_name="acq",
        done_event="acq/${p}/${n}",
    )
    dramatiq.actor(lambda p, n: None, broker=broker, actor_name="treat", queue_name="treat")
    dramatiq.actor(
        lambda p: None, broker=broker, actor_name="report", queue_name="report", done_event=False
    )
    graph = graph_of(PIPELINE, app=app_facts(broker))
    edges = named(graph)
    assert ("acquire", "done", "global/done") in edges
    assert ("report", "done", "global/done") not in edges  # done_event=False: no event
    assert ("treat", "done", "global/done") in edges


def test_without_completion_on_the_apps_broker_no_done_event_comes_back() -> None:
    broker = StubBroker()
    dramatiq.actor(lambda p, n: None, broker=broker, actor_name="treat", queue_name="treat")
    dramatiq.actor(lambda p: None, broker=broker, actor_name="report", queue_name="report")
    graph = graph_of(PIPELINE, app=app_facts(broker))
    assert not [e for e in named(graph) if e[0] in ("treat", "report") and e[1] == "done"]


def test_a_huge_config_is_capped_and_says_what_it_left_out() -> None:
    rules = [{"name": f"r{i}", "on": f"^e{i}$", "make": {"queue": f"q{i}"}} for i in range(60)]
    graph = graph_of({"watchers": [{"input_queue": "in", "rules": rules}]}, max_nodes=30)
    assert len(graph.nodes) == 30
    assert dict(graph.left_out) == {"rule": 45, "raw list": 46}  # of 1 + 60 + 60
    kept = {n.id for n in graph.nodes}
    assert all(e.tail in kept and e.head in kept for e in graph.edges)


def test_dot_lays_out_every_node_and_edge() -> None:
    graph = graph_of(PIPELINE)
    drawing = draw(graph, Figures(rates={0: 2.5}))
    assert drawing.problem is None
    assert len(drawing.nodes) == len(graph.nodes) and len(drawing.edges) == len(graph.edges)
    assert all(n.x >= -1 and n.x + n.width <= drawing.width + 1 for n in drawing.nodes)
    assert drawing.edges[0].label == "2.5/min"
    assert [n.points != "" for n in drawing.nodes] == [
        n.kind in ("join", "fail") for n in graph.nodes
    ]


def test_hostile_names_are_drawn_as_text() -> None:
    hostile = '<script>alert(1)</script>"&<b onmouseover="x">'
    data = {
        "watchers": [
            {
                "input_queue": f"in/{hostile}",
                "rules": [
                    {"name": hostile, "on": "^(?P<x>.*)$", "make": {"queue": f"out/{hostile}"}}
                ],
            }
        ]
    }
    graph = graph_of(data)
    drawing = draw(graph, Figures(lines={graph.nodes[0].id: hostile}))
    assert drawing.problem is None
    html = (
        environment()
        .from_string('{% from "graph.html" import pipeline_graph %}{{ pipeline_graph(d) }}')
        .render(d=drawing)
    )
    assert "<script" not in html and "<b " not in html and 'onmouseover="x"' not in html
    assert "&lt;script&gt;alert(1)" in html


def test_without_dot_the_drawing_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot there
    _run_dot.cache_clear()
    try:
        drawing = draw(graph_of(PIPELINE), Figures())
    finally:
        _run_dot.cache_clear()
    assert drawing.problem is not None
    assert "Graphviz's dot" in drawing.problem and "apt-get install graphviz" in drawing.problem
