"""The shape of the work as a graph, from the compiled rules (and the app, when known).

Nodes: event lists (each watcher's input, and the done lists the app's actors write),
rules, joins (merge points) and the rules that fail a join's groups, raw target lists
and Dramatiq actors. Edges: list -> rule (matched), rule -> target (queued; ``fan-out``
when its make records a group, ``expired`` for a join's deadline make), target -> the
list its done events go back to (``done``, and ``failed`` when a watcher watches the
failure list), and fan-out rule -> join (``group``) when the make's ``group`` and the
join's are the same template. Every name is text from the config: the templates escape
it. At most ``max_nodes`` nodes are kept (config order); :attr:`Graph.left_out` counts
the others per kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..rules.model import Make, Rule
from ..rules.ruleset import RuleSet
from .app_facts import AppFacts

#: Most nodes drawn: past this a graph is no longer readable (and its layout slow).
MAX_NODES = 80

#: Node kinds, as the page names them.
KINDS = {
    "list": "event list",
    "rule": "rule",
    "join": "join",
    "fail": "fails groups",
    "queue": "raw list",
    "actor": "actor",
}


@dataclass(frozen=True, slots=True)
class Node:
    """A box of the graph. ``id`` is made here (``n<number>``), never from the config."""

    id: str
    kind: str  # a key of KINDS
    name: str
    detail: str  # the rule's pattern, the actor's queue, the join's group
    watcher: int | None = None  # list: the watcher whose input it is; rule: its watcher's
    rule: str | None = None  # rule, join, fail: the name its counters carry
    queue: str | None = None  # actor, raw list: the queue (a template) it takes from


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow; ``counter`` is the watcher's history field giving its rate, if any."""

    tail: str
    head: str
    kind: str  # matched, queued, fan-out, expired, done, failed, group
    watcher: int | None = None
    counter: str | None = None


@dataclass(frozen=True, slots=True)
class Graph:
    """The nodes and edges drawn, and how many nodes per kind were left out."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    left_out: tuple[tuple[str, int], ...] = ()

    def node(self, node_id: str) -> Node:
        """The node of ``node_id``."""
        return next(n for n in self.nodes if n.id == node_id)


class _Builder:
    def __init__(self, ruleset: RuleSet, app: AppFacts | None) -> None:
        self.app = app
        self.names = [w.spec.input_queue for w in ruleset.watchers]
        self.inputs = {name: i for i, name in enumerate(self.names)}
        self.nodes: dict[tuple[str, ...], Node] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}

    def node(
        self,
        key: tuple[str, ...],
        kind: str,
        name: str,
        detail: str = "",
        *,
        watcher: int | None = None,
        rule: str | None = None,
        queue: str | None = None,
    ) -> str:
        if key not in self.nodes:
            node_id = f"n{len(self.nodes)}"
            self.nodes[key] = Node(node_id, kind, name, detail, watcher, rule, queue)
        return self.nodes[key].id

    def edge(
        self,
        tail: str,
        head: str,
        kind: str,
        watcher: int | None = None,
        counter: str | None = None,
    ) -> None:
        self.edges.setdefault((tail, head, kind), Edge(tail, head, kind, watcher, counter))

    def list_node(self, name: str) -> str:
        watcher = self.inputs.get(name)
        detail = "" if watcher is not None else "watched by no rule here"
        return self.node(("list", name), "list", name, detail, watcher=watcher)

    def rule(self, w: int, index: int, rule: Rule) -> None:
        kind = "rule" if rule.join is None else "fail" if rule.join.fail else "join"
        detail = rule.pattern.pattern if rule.join is None else f"group {rule.join.group.source}"
        key = ("rule", str(w), str(index))
        rule_id = self.node(key, kind, rule.name, detail, watcher=w, rule=rule.name)
        self.edge(self.list_node(self.names[w]), rule_id, "matched", w, f"{rule.name}|matched")
        for make in rule.makes:
            kind = "fan-out" if make.group is not None else "queued"
            self.target(w, rule_id, make, kind, f"{rule.name}|queued")
        for make in rule.join.expired if rule.join is not None else ():
            self.target(w, rule_id, make, "expired", f"{rule.name}|expired")

    def target(self, w: int, rule_id: str, make: Make, kind: str, counter: str) -> None:
        queue, actor, done = make.target.queue.source, make.target.actor, self.names[w]
        if actor is None:
            if queue in self.inputs:  # a rule writing straight into a watched list
                self.edge(rule_id, self.list_node(queue), kind, w, counter)
                return
            target = self.node(("queue", queue), "queue", queue, "for workers", queue=queue)
            self.edge(rule_id, target, kind, w, counter)
            self.edge(target, self.list_node(done), "done")  # the resc worker contract
            return
        target = self.actor(actor, queue)
        self.edge(rule_id, target, kind, w, counter)
        if not self.emits(actor):
            return
        self.edge(target, self.list_node(done), "done")  # a rule-made message's done list
        failed = self.failed_list(actor, done)
        if failed in self.inputs:
            self.edge(target, self.list_node(failed), "failed")

    def emits(self, actor: str) -> bool:
        """Whether the workers write events for ``actor``'s messages (unknown app: yes)."""
        if self.app is None:
            return True
        facts = self.app.actor(actor)
        return self.app.done_queue is not None and (facts is None or facts.emits)

    def failed_list(self, actor: str, done: str) -> str:
        facts = self.app.actor(actor) if self.app is not None else None
        own = facts.failed_queue if facts is not None else None
        return own or (self.app.failed_queue if self.app else None) or f"{done}/failed"

    def actor(self, name: str, queue: str) -> str:
        return self.node(("actor", name), "actor", name, f"queue {queue}", queue=queue)

    def app_actors(self, app: AppFacts) -> None:
        """The done events of the actors' own messages (``done_event``)."""
        for facts in app.actors:
            done = app.done_list(facts)
            if done is None:
                continue
            self.edge(self.actor(facts.name, facts.queue), self.list_node(done), "done")

    def groups(self, ruleset: RuleSet) -> None:
        """A fan-out make's rule -> the joins and failure rules of the same group."""
        rules = [(w, i, r) for w, wr in enumerate(ruleset.watchers) for i, r in enumerate(wr.rules)]
        joins = [(w, i, r) for w, i, r in rules if r.join is not None]
        for w, i, rule in rules:
            for make in rule.makes:
                if make.group is None:
                    continue
                for jw, ji, join in joins:
                    assert join.join is not None
                    if join.join.group.source == make.group.source:
                        tail = self.nodes[("rule", str(w), str(i))].id
                        head = self.nodes[("rule", str(jw), str(ji))].id
                        self.edge(tail, head, "group")


def build_graph(
    ruleset: RuleSet, app: AppFacts | None = None, *, max_nodes: int = MAX_NODES
) -> Graph:
    """The pipeline graph of ``ruleset`` (every watcher), with ``app``'s actors when known."""
    b = _Builder(ruleset, app)
    for name in b.names:
        b.list_node(name)
    for w, watcher in enumerate(ruleset.watchers):
        for index, rule in enumerate(watcher.rules):
            b.rule(w, index, rule)
    b.groups(ruleset)
    if app is not None:
        b.app_actors(app)
    nodes = list(b.nodes.values())
    kept = {n.id for n in nodes[:max_nodes]}
    left_out = Counter(KINDS[n.kind] for n in nodes[max_nodes:])
    edges = tuple(e for e in b.edges.values() if e.tail in kept and e.head in kept)
    return Graph(tuple(nodes[:max_nodes]), edges, tuple(sorted(left_out.items())))
