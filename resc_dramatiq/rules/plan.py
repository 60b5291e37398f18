"""The planning step: a list of events in, everything one commit writes out (pure).

``Planner(rules).plan(events)`` matches every event against the watcher's rules, fills
the templates, expands rules with fetchers through an :class:`Expander`, builds the
Dramatiq messages and sorts the events into planned, failed and unmatched. It knows no
Redis and no router: the router commits what it returns, the worker commits it for
one done event, ``explain`` shows it, and the tests read it directly. Each planned
task carries its cause (:mod:`.lineage`): the event's, and the message it came from.

Over ~250 lines on purpose: the one planning step (matches, joins, causes) reads top to
bottom; split, each part would reach back into the planner's state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from ..errors import RuleError
from . import data
from .batch import Batch, FailedEvent, JoinHit, PlannedTask
from .ids import new_id
from .joins import MEMBERS_MARK, MEMBERS_VARIABLE, join_variables, membership
from .lineage import Cause, DoneCause, record, record_of_message
from .messages import build_message
from .model import Match, Task, WatcherRules
from .patterns import decode_event, not_utf8


class Expander(Protocol):
    """Turns a matched rule with fetchers into one variable set per fetched result.

    :class:`~resc_dramatiq.rules.fetch.Fetcher` is the one the router uses.
    """

    def __call__(self, match: Match) -> list[dict[str, str]]:
        """The variable sets of ``match`` (its own variables win on a clash)."""
        ...

    def prefetch(self, matches: Sequence[Match]) -> None:
        """Start the calls of a whole batch at once, before :meth:`__call__` reads them."""
        ...


class Planner:
    """Plans the batches of one watcher's rules (thread-safe: it keeps no state)."""

    def __init__(self, rules: WatcherRules, *, expander: Expander | None = None) -> None:
        self.rules = rules
        self.expander = expander
        #: Done events of the messages this watcher's rules make come back here.
        self.done_queue = rules.spec.input_queue
        #: This watcher reads envelopes: its messages' done events carry their cause.
        self.reads_envelopes = rules.spec.data or rules.spec.lineage is not None
        #: Lineage records are kept (the commit writes each task's).
        self.keeps_lineage = rules.spec.kept_lineage is not None
        #: Per rule index: its makes name their cause (a Dramatiq message's
        #: ``resc_cause``, a lineage record), so a join's make names its members' ids.
        self.causes = [
            self.keeps_lineage or any(m.target.actor is not None for m in r.makes)
            for r in rules.rules
        ]

    def plan(
        self,
        events: Sequence[bytes],
        *,
        now: float | None = None,
        envelopes: bool = False,
        cause: DoneCause | None = None,
        read: tuple[str, dict[str, Any]] | None = None,
    ) -> Batch:
        """The batch of ``events``: tasks of every matching rule, in event and rule order.

        An event one of whose rules fails (a missing variable, a fetch that failed)
        makes no task at all and is listed as failed, so it can be retried whole; so is
        an event that is not valid UTF-8 (never matched as replaced text, where
        ``ok/\\xff`` and ``ok/\\xfe`` would make the same task). ``cause``: the
        message whose done event the events are, when not told by their envelopes (a
        worker routing one inline). ``read``: the one event's text and payload when the
        caller has them already (a worker's own done event, whose envelope it has just
        made): the event is not parsed again.
        """
        now = time.time() if now is None else now
        batch = Batch(events=events, taken_at=now)
        now_ms = int(now * 1000)
        # matched as the loop goes, so that an event's matches are freed before the next
        # event's: fewer objects live through the garbage collector's passes (they cost
        # a tenth of the time); all at once only where the fetches start together
        found: Iterable[list[Match] | UnicodeDecodeError] = (
            self._matched(events, envelopes) if read is None else [self._matched_read(*read)]
        )
        if self.expander is not None:
            found = self._prefetched(list(found), self.expander)
        # the loop runs per event: its methods bound once, its rules counted by index
        expand, add = self.expand, batch.tasks.append
        matched: dict[int, int] = {}  # rule index -> events it matched, in first-seen order
        for index, matches in enumerate(found):
            if not matches:
                batch.unmatched.append(events[index])
                continue
            if isinstance(matches, UnicodeDecodeError):
                batch.failed.append(FailedEvent(events[index], "", not_utf8(matches)))
                continue
            tasks: list[Task] = []
            hits: list[JoinHit] = []
            parent = matches[0].cause or cause
            if parent is not None and parent.trace is not None:
                batch.traces.append(parent.trace)
            for m in matches:
                try:
                    if m.rule.join is None:
                        tasks += expand(m)
                    else:
                        m.cause = m.cause or cause
                        hits.append(self.join_hit(m, index, now_ms))
                except Exception as e:  # a poison event must not block the batch
                    error = f"{type(e).__name__}: {e}"
                    batch.failed.append(FailedEvent(events[index], m.rule.name, error))
                    break
            else:
                for m in matches:
                    matched[m.index] = matched.get(m.index, 0) + 1
                self._add(tasks, parent, index, now_ms, add)
                if hits or any(t.make.group is not None for t in tasks):
                    batch.joins += self._recorded(hits, tasks, index)
        for rule_index, count in matched.items():  # rules may share a name
            name = f"{self.rules.rules[rule_index].name}|matched"
            batch.counters[name] = batch.counters.get(name, 0) + count
        return batch

    def _add(
        self,
        tasks: list[Task],
        parent: DoneCause | None,
        index: int,
        now_ms: int,
        add: Callable[[PlannedTask], None],
    ) -> None:
        """Plan ``tasks`` of event ``index`` (the tasks of one rule share one cause)."""
        causes: dict[int, Cause] = {}
        needed = self.causes
        for t in tasks:
            cause = causes.get(t.rule)
            if cause is None and needed[t.rule]:
                cause = causes[t.rule] = self.cause(t, parent)
            add(self.planned(t, index, now_ms, cause))

    @staticmethod
    def _prefetched(
        found: list[list[Match] | UnicodeDecodeError], expander: Expander
    ) -> list[list[Match] | UnicodeDecodeError]:
        """``found``, the fetches of its matches started together."""
        fetching = [m for ms in found if isinstance(ms, list) for m in ms if m.rule.fetch]
        if fetching:
            expander.prefetch(fetching)
        return found

    def _matched(
        self, events: Sequence[bytes], envelopes: bool = False
    ) -> Iterator[list[Match] | UnicodeDecodeError]:
        """Per event, its matches, or why it is not UTF-8 (events are matched as text);
        envelopes are read in a watcher with ``data: true`` and when told (a worker's
        own)."""
        matches_of = self.rules.matches
        if envelopes or self.reads_envelopes:
            yield from map(self._matched_envelope, events)
            return
        for event in events:
            if isinstance(event, str):  # a caller's text (decode_responses)
                yield matches_of(event)
                continue
            try:
                text = event.decode()
            except UnicodeDecodeError as e:
                yield e
                continue
            yield matches_of(text, event)

    def _matched_envelope(self, event: bytes | str) -> list[Match] | UnicodeDecodeError:
        """An event's matches, its payload's ``data.<field>`` variables added (the rule's
        own win) when it is an envelope."""
        found = data.parse_caused(event)
        if found is None:
            if isinstance(event, str):
                return self.rules.matches(event)
            try:
                return self.rules.matches(event.decode(), event)
            except UnicodeDecodeError as e:
                return e
        text, payload, cause = found
        return self._matched_read(text, payload, cause)

    def _matched_read(
        self, text: str, payload: dict[str, Any], cause: DoneCause | None = None
    ) -> list[Match]:
        """The matches of an event already read (an envelope's text, payload and
        cause), its payload's ``data.<field>`` variables added (the rule's own win)."""
        matches = self.rules.matches(text)
        if matches:
            fields = data.variables(payload)
            for m in matches:
                m.variables = fields | m.variables
                m.data = payload
                m.cause = cause
        return matches

    def expand(self, match: Match) -> list[Task]:
        """The tasks of a matched rule, through the expander when it has fetchers."""
        if not match.rule.fetch:
            return match.rule.make(match.index, match.variables, data=match.data)
        if self.expander is None:
            raise RuleError(f"rule {match.rule.name!r} has fetchers but no fetch client")
        make = match.rule.make
        found = self.expander(match)
        return [t for variables in found for t in make(match.index, variables, data=match.data)]

    def join_hit(self, match: Match, index: int, now_ms: int) -> JoinHit:
        """What ``match`` (of a join rule) does to its group, and what it fires if it
        completes the group (a member) or closes it (a failure)."""
        rule, join = match.rule, match.rule.join
        assert join is not None
        variables = match.variables
        if join.fail:
            group = join.group.render(variables)
            made = join_variables(variables, group, 0)
            made_tasks = rule.make(match.index, made, data=match.data)
            cause = self.cause(made_tasks[0], match.cause) if made_tasks else None
            tasks = [self.planned(t, index, now_ms, cause) for t in made_tasks]
            return JoinHit("fail", index, rule.name, group, tasks=tasks)
        m = membership(join, variables)
        made = join_variables(variables, m.group, m.expect)
        payload = token = ""
        if join.keeps_data:
            payload = json.dumps(match.data, separators=(",", ":")) if match.data else ""
            made[MEMBERS_VARIABLE] = f"\0resc:members:{new_id()}"
            token = json.dumps(made[MEMBERS_VARIABLE])
        made_tasks = rule.make(match.index, made, data=match.data)
        # the members' ids, filled in by the commit that completes the group, where a
        # cause names them: a message's (its resc_cause) or a lineage record's
        ids = cause = None
        if made_tasks and self.causes[match.index]:
            ids = f"resc-ids-{new_id()}"
            cause = self.cause(made_tasks[0], match.cause)
            cause.members = ids
        tasks = [self.planned(t, index, now_ms, cause) for t in made_tasks]
        parent = match.cause.message if match.cause is not None else ""
        trace = (match.cause.trace or "") if match.cause is not None else ""
        return JoinHit(
            "member", index, rule.name, m.group, m.member, m.expect, m.members,
            join.deadline_ms, join.ttl_ms, tasks, payload, token, parent, ids or "", trace,
        )  # fmt: skip

    def expired(self, rule: str, event: bytes | str, group: str, now_ms: int) -> list[PlannedTask]:
        """The tasks of join rule ``rule``'s ``expired`` make for ``group``, made from its
        first member's variables (its ``event``, matched again); raise :class:`RuleError`
        when this watcher has no such join rule, the event no longer matches it, or a
        variable has no value."""
        return self._from_first(rule, event, group, now_ms, expired=True)

    def completed(
        self, rule: str, event: bytes | str, group: str, now_ms: int
    ) -> list[PlannedTask]:
        """The tasks of join rule ``rule``'s make for ``group``, made from its first
        member's variables, for an operator completing it (raises as :meth:`expired`)."""
        return self._from_first(rule, event, group, now_ms, expired=False)

    def _from_first(
        self, rule: str, event: bytes | str, group: str, now_ms: int, *, expired: bool
    ) -> list[PlannedTask]:
        for index, r in enumerate(self.rules.rules):
            if r.name == rule and r.join is not None and not r.join.fail:
                found = data.parse(event)  # the first member's element: maybe an envelope
                variables = r.match(decode_event(event) if found is None else found[0])
                if variables is None:
                    raise RuleError(f"join rule {rule!r} no longer matches {event!r}")
                size = membership(r.join, variables).expect
                made = join_variables(variables, group, size)
                made[MEMBERS_VARIABLE] = MEMBERS_MARK  # the script puts the payloads there
                tasks = r.make(index, made, r.join.expired if expired else None)
                return [self.planned(t, -1, now_ms, self.cause(t, None)) for t in tasks]
        raise RuleError(f"no join rule {rule!r} in watcher {self.done_queue!r}")

    def _recorded(self, hits: list[JoinHit], tasks: list[Task], index: int) -> list[JoinHit]:
        """``hits``, and the fan-out tasks among ``tasks`` recorded as the expected members
        of their make's group (one hit per event and group)."""
        if not tasks:
            return hits
        records: dict[str, JoinHit] = {}
        for t in tasks:
            if t.make.group is None:
                continue
            group = t.make.group.render(t.variables)
            found = records.get(group)
            if found is None:
                rule = self.rules.rules[t.rule].name
                found = records[group] = JoinHit("record", index, rule, group)
            found.members += (t.task,)
        return [*hits, *records.values()]

    def matching(self, event: bytes | str) -> list[Match]:
        """The rules that match the text ``event``, in config order."""
        return self.rules.matches(decode_event(event))

    def cause(self, task: Task, parent: DoneCause | None) -> Cause:
        """Why ``task`` exists: its event (and the message whose done event it is), its
        rule, this watcher (see :mod:`.lineage`)."""
        event = task.variables.get("input_task", "")
        rule = self.rules.rules[task.rule].name
        return Cause(parent, event, rule, self.done_queue, self.reads_envelopes)

    def planned(
        self, task: Task, index: int, now_ms: int, cause: Cause | None = None
    ) -> PlannedTask:
        """What the commit writes for ``task``, its Dramatiq message built if it has one
        (with its ``cause``), its lineage record when this watcher keeps them."""
        rule = self.rules.rules[task.rule].name
        message = None
        actor = task.make.target.actor  # Task.actor, without the property's call
        if cause is None and (actor is not None or self.keeps_lineage):
            cause = self.cause(task, None)
        if actor is not None:
            assert cause is not None
            message = build_message(task, now_ms=now_ms, done_queue=self.done_queue, cause=cause)
        planned = PlannedTask(task.task.encode(), task.queue, task.set, index, rule, message)
        if self.keeps_lineage:
            assert cause is not None
            if message is None:
                planned.lineage = record(task.task, planned.queue, cause, None, now_ms)
            else:
                actor = task.make.target.actor or ""
                ids = (message.message_id, message.redis_message_id, actor)
                planned.lineage = record_of_message(
                    task.task, planned.queue, cause, ids, message.payload, now_ms
                )
        return planned
