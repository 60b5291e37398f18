"""The join soak: a Dramatiq fan-out/fan-in pipeline under kill -9 and lost replies.

The pipeline (``join_config``), on a Redis of its own, with real ``dramatiq.Worker``
processes on ``RedisBroker`` (``python -m tests.joins_chaos worker ...``):

* the producer sends the actor ``split(g)`` 1 to 3 times per group, the groups in a
  random order; its done event ``batch/<g>`` fans out: the rule ``split`` makes 50 (or
  ``members``) messages ``member(g, i)``, task ``m/<g>/<i>``, recorded as the group
  ``g/<g>`` (``group:``); so every member runs, and sends its done event, once per copy;
* the member's body records its first run (``HSETNX jc/done/<g> <i> <ms>``) before
  ``Completion`` writes its done event, and in the same script looks at its group: a
  group closed (its join fired) before one of its members first ran was closed without
  that member's done event, so early (noted in ``jc/early/<g>``). The join message's
  timestamp would not do: it is set when the commit is planned, and a commit planned
  before another member's commit may run after it. Member 0 of every ``incomplete_every``-th group
  fails for good (no retries): its failure event goes to ``global/done/failed``, which
  nobody watches, and its group misses a member for ever;
* the join rule ``gather`` (``expect: "fan-out"``) makes ``joined(g)``, whose body
  records its Dramatiq message id and how many members had run by then.

Routing is done by router processes (``Mode.ROUTERS``: three of them, one SIGKILLed
every 1-2 s and restarted, talking to Redis through a proxy that loses 10 % of the
script replies) or inside the workers (``Mode.INLINE``: ``Completion(rules=...)``, one
worker SIGKILLed every 1-2 s and restarted, ``Redelivery`` bringing its messages back
in seconds; Completion's own client goes through the lossy proxy).

Then the checks (:meth:`JoinSoak.check`): every complete group has exactly one join
message (one Dramatiq message id, however often it ran), closed after every one of its
members had first run; no incomplete group has any; the counters agree. Every wait is bounded.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message

from resc_dramatiq.store.joins import JoinKeys
from tests.pipeline_soak import (
    INPUT,
    Mode,
    PipelineSoak,
    SoakFigures,
    SoakPlan,
    worker_broker,
)
from tests.procs import work_until_sigterm

__all__ = ["JoinFigures", "JoinPlan", "JoinSoak", "Mode"]

FAILED = "global/done/failed"
DONE_AT = "jc/done/"  # + group: hash member -> ms of its first run
JOINED = "jc/joined/"  # + group: hash join message id -> members run when it ran
EARLY = "jc/early/"  # + group: hash member -> its group's state when it first ran
QUEUES = ("split", "members", "joined")


def join_config(members: int) -> dict[str, Any]:
    """The fan-out of ``members`` messages per group and the join that gathers them."""
    split = {
        "name": "split",
        "on": r"^batch/(?P<g>\d+)$",
        "make": [
            {
                "actor": "member",
                "queue": "members",
                "task": f"m/${{g}}/{i}",
                "kwargs": {"g": "${g}", "i": str(i)},
                "group": "g/${g}",
            }
            for i in range(members)
        ],
    }
    gather = {
        "name": "gather",
        "on": r"^m/(?P<g>\d+)/\d+$",
        "join": {"group": "g/${g}", "expect": "fan-out"},
        "make": {"actor": "joined", "queue": "joined", "task": "j/${g}", "kwargs": {"g": "${g}"}},
    }
    return {"watchers": [{"input_queue": INPUT, "rules": [split, gather]}]}


@dataclass(frozen=True)
class JoinPlan(SoakPlan):
    """The size of one join soak (its faults: ``SoakPlan``)."""

    groups: int = 30
    members: int = 50
    incomplete_every: int = 10  # group numbers ending so: member 0 fails, never complete

    def incomplete(self, g: int) -> bool:
        return g % self.incomplete_every == self.incomplete_every - 1


@dataclass
class JoinFigures(SoakFigures):
    """What a join soak did."""

    member_runs: int = 0
    joins: int = 0
    late: int = 0
    kill_log: list[str] = field(default_factory=list)

    def report(self) -> str:
        return (
            f"split sends {self.sends}, member done events {self.member_runs}, "
            f"joins {self.joins}, late members {self.late}, kills {self.kills}, "
            f"replies lost {self.replies_lost}, {self.duration_s:.1f} s"
        )


class JoinSoak(PipelineSoak):
    """One run of a ``JoinPlan`` in ``workdir``."""

    queues = QUEUES
    worker_module = "tests.joins_chaos"

    def __init__(self, *, plan: JoinPlan, workdir: Path) -> None:
        super().__init__(plan=plan, workdir=workdir, figures=JoinFigures())
        self.plan: JoinPlan = plan
        self.figures: JoinFigures

    def config(self) -> dict[str, Any]:
        return join_config(self.plan.members)

    def messages(self) -> list[Message[Any]]:
        """``split(g)`` 1-3 times per group (each send a message of its own), shuffled."""
        sends = [
            g for g in range(self.plan.groups) for _ in range(self.rng.randint(*self.plan.copies))
        ]
        self.rng.shuffle(sends)
        return [Message("split", "split", (), {"g": str(g)}, {}) for g in sends]

    def worker_args(self) -> list[str]:
        return [str(self.plan.incomplete_every)]

    # the checks

    def complete_groups(self) -> list[int]:
        return [g for g in range(self.plan.groups) if not self.plan.incomplete(g)]

    def finished(self, r: redis.Redis) -> bool:
        """Every member ran, every complete group ran its join."""
        pipe = r.pipeline(transaction=False)
        for g in range(self.plan.groups):
            pipe.hlen(f"{DONE_AT}{g}")
            pipe.hlen(f"{JOINED}{g}")
        replies = pipe.execute()
        for g in range(self.plan.groups):
            ran, joined = replies[2 * g], replies[2 * g + 1]
            wanted = self.plan.members - 1 if self.plan.incomplete(g) else self.plan.members
            if ran < wanted or (joined == 0 and not self.plan.incomplete(g)):
                return False
        return True

    def progress(self, r: redis.Redis) -> str:
        joined = sum(bool(r.hlen(f"{JOINED}{g}")) for g in range(self.plan.groups))
        return f"groups joined {joined}/{len(self.complete_groups())}, {super().progress(r)}"

    def check(self, r: redis.Redis) -> None:
        """Each complete group joined once, after all of its members; no other did."""
        problems: list[str] = []
        for g in range(self.plan.groups):
            runs = {k.decode(): int(v) for k, v in r.hgetall(f"{JOINED}{g}").items()}
            early = {k.decode(): v.decode() for k, v in r.hgetall(f"{EARLY}{g}").items()}
            if early:
                problems.append(f"group {g} was closed before these members first ran: {early}")
            if self.plan.incomplete(g):
                if runs:
                    problems.append(f"group {g} lacks member 0 and joined: {runs}")
                continue
            if len(runs) != 1:
                problems.append(f"group {g} joined {len(runs)} times (message ids {list(runs)})")
            for message_id, ran in runs.items():
                if ran != self.plan.members:
                    problems.append(f"group {g}: its join {message_id} ran when {ran} had run")
        assert not problems, "\n".join(problems[:20])
        stats = {k.decode(): int(v) for k, v in r.hgetall(f"{INPUT}/stats").items()}
        assert stats.get("gather|completed") == len(self.complete_groups()), stats
        assert stats.get("gather|failed", 0) == 0 and r.llen(f"{INPUT}/dead") == 0
        failures = Counter(e.decode() for e in r.lrange(FAILED, 0, -1))
        incomplete = [g for g in range(self.plan.groups) if self.plan.incomplete(g)]
        assert set(failures) == {f"m/{g}/0" for g in incomplete}, failures
        assert r.llen("dramatiq:joined") == 0
        self.figures.joins = sum(r.hlen(f"{JOINED}{g}") for g in range(self.plan.groups))
        self.figures.member_runs = stats.get("gather|matched", 0)
        self.figures.late = stats.get("gather|late", 0)


def worker_main(argv: list[str]) -> int:
    """``worker URL LOSSY_URL RULES THREADS INCOMPLETE_EVERY``: runs until SIGTERM.

    With ``RULES`` (a config file), done events are routed in the worker, and
    Completion's client goes through ``LOSSY_URL`` (see ``worker_broker``).
    """
    import dramatiq
    from dramatiq.middleware import CurrentMessage

    url, lossy_url, rules, threads, every = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    broker = worker_broker(url, lossy_url, rules)
    r: redis.Redis = broker.client

    @dramatiq.actor(broker=broker, queue_name="split", done_event="batch/${g}")
    def split(g: str) -> None:
        """Its done event fans the group out."""

    # A member's first run, and whether its group was closed by then: one atomic look.
    # Its done event comes after its first run, so a group closed before it is early.
    first_run = r.register_script(
        "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then "
        "local state = redis.call('HGET', KEYS[2], 'state') "
        "if state and state ~= 'open' and state ~= 'fanout' then "  # fanout: recorded, open
        "redis.call('HSET', KEYS[3], ARGV[1], state) end "
        "end return 0"
    )
    groups = JoinKeys.of(INPUT)

    @dramatiq.actor(broker=broker, queue_name="members", max_retries=0)
    def member(g: str, i: str) -> None:
        if i == "0" and int(g) % every == every - 1:
            raise RuntimeError(f"member 0 of group {g} fails for good")
        keys = [f"{DONE_AT}{g}", groups.group(f"g/{g}"), f"{EARLY}{g}"]
        first_run(keys=keys, args=[i, int(time.time() * 1000)])

    @dramatiq.actor(broker=broker, queue_name="joined", done_event=False)
    def joined(g: str) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None
        ran = r.hlen(f"{DONE_AT}{g}")
        r.hset(f"{JOINED}{g}", message.message_id, ran)

    del split, member, joined  # declared on the broker; the worker finds them there
    return work_until_sigterm(broker, threads=threads)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
