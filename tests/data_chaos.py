"""The data soak: a three-stage Dramatiq chain passing return values, under kill -9 and
lost replies (the fleet and the faults: ``tests/pipeline_soak.py``).

The chain (``chain_config``), on a Redis of its own, with real ``dramatiq.Worker``
processes on ``RedisBroker`` (``python -m tests.data_chaos worker ...``):

* stage 1, ``encode(n)`` (``done_data="result"``), returns ``{"path": "/v/<n>.mp4",
  "size": 3n}`` with its done event ``enc/<n>``. The producer sends each chain's message
  1 to 3 times: the very same Dramatiq message (one message id), as after a lost ack, so
  that the chain has one done event and one follow-up however often stage 1 ran;
* the rule ``thumb`` makes ``thumb(n, path, size)`` (``data: ["path", "size"]``; dedup
  set ``dc/todo2``, released with its done event) and pushes ``<n> ${data.path}
  ${data.size}`` onto the raw list ``dc/encoded`` (no dedup set: a repeated commit
  would show there). ``thumb`` returns ``{"thumb": "<path>.jpg", "area": 2 size}``,
  sent by a ``done_data`` callable that adds ``"of": n`` from the message;
* the rule ``publish`` makes ``publish(n, payload)`` (``data: "payload"``, the whole
  payload; dedup set ``dc/todo3``) and pushes ``<n> ${data.thumb} ${data.area}`` onto
  ``dc/thumbs``; ``publish`` is a leaf (``done_event=False``).

Besides the soak's faults (``Mode``), every worker process SIGKILLs itself after about
one message in ``die_every``, right after Completion wrote that message's done event
(or committed it, routed inline) and before its ack: ``Redelivery`` runs the message
again, and its done event must not be written (nor routed) twice.

Stages 2 and 3 record every run: ``HINCRBY dc/got<k>/<n> "<message id> <kwargs as
JSON>"``, so the checks see how many Dramatiq messages each chain made per stage (one),
how often each ran, and what every run received. The worker's Completion writes through
the lossy proxy in both modes (its done events are envelopes, their retries after a lost
reply must write them once).

The checks (:meth:`DataSoak.check`): per chain, one message per stage, every run given
exactly the data derived from ``n``; one line per chain in each raw list, with the
right data; the dedup sets, the taken lists, the queues and the dead letters empty.

Over ~250 lines on purpose: the pipeline, its checks and its worker process read together.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from dramatiq import Message

from tests.pipeline_soak import (
    INPUT,
    Mode,
    PipelineSoak,
    SoakFigures,
    SoakPlan,
    worker_broker,
)
from tests.procs import work_until_sigterm

__all__ = ["DataFigures", "DataPlan", "DataSoak", "Mode"]

RUNS_1 = "dc/runs1"  # hash "<n> <message id>" -> runs of stage 1
GOT = "dc/got"  # + "<stage>/<n>": hash "<message id> <kwargs JSON>" -> runs
ENCODED, THUMBS = "dc/encoded", "dc/thumbs"  # the raw lists the rules push to
SETS = ("dc/todo2", "dc/todo3")
QUEUES = ("encode", "thumb", "publish")


def chain_config() -> dict[str, Any]:
    """The two rules that chain the three stages, reading envelopes."""
    thumb = {
        "name": "thumb",
        "on": r"^enc/(?P<n>\d+)$",
        "make": [
            {
                "actor": "thumb",
                "queue": "thumb",
                "task": "th/${n}",
                "data": ["path", "size"],
                "set": SETS[0],
                "release": "done",
            },
            {"queue": ENCODED, "task": "${n} ${data.path} ${data.size}"},
        ],
    }
    publish = {
        "name": "publish",
        "on": r"^th/(?P<n>\d+)$",
        "make": [
            {
                "actor": "publish",
                "queue": "publish",
                "task": "pub/${n}",
                "data": "payload",
                "set": SETS[1],
            },
            {"queue": THUMBS, "task": "${n} ${data.thumb} ${data.area}"},
        ],
    }
    return {"watchers": [{"input_queue": INPUT, "data": True, "rules": [thumb, publish]}]}


def expected(n: int) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """What stage 2 and stage 3 receive for chain ``n``, and the raw lists' lines."""
    path, size = f"/v/{n}.mp4", 3 * n
    thumb = {"thumb": f"{path}.jpg", "area": 2 * size, "of": str(n)}
    return (
        {"n": str(n), "path": path, "size": size},
        {"n": str(n), "payload": thumb},
        f"{n} {path} {size}",
        f"{n} {path}.jpg {2 * size}",
    )


@dataclass(frozen=True)
class DataPlan(SoakPlan):
    """The size of one data soak (its faults: ``SoakPlan``)."""

    chains: int = 200
    die_every: int = 80  # a worker kills itself after about one message in so many


@dataclass
class DataFigures(SoakFigures):
    """What a data soak did."""

    stage_1_runs: int = 0
    stage_2_runs: int = 0
    stage_3_runs: int = 0

    def report(self) -> str:
        return (
            f"stage 1 sends {self.sends}, runs per stage {self.stage_1_runs}/"
            f"{self.stage_2_runs}/{self.stage_3_runs}, kills {self.kills}, "
            f"workers killed after a done event {self.deaths}, "
            f"replies lost {self.replies_lost}, {self.duration_s:.1f} s"
        )


def received(r: redis.Redis, stage: int, n: int) -> Counter[tuple[str, str]]:
    """(message id, kwargs JSON) -> runs, of stage ``stage`` in chain ``n``."""
    got: Counter[tuple[str, str]] = Counter()
    for key, runs in r.hgetall(f"{GOT}{stage}/{n}").items():
        message_id, _, kwargs = key.decode().partition(" ")
        got[message_id, kwargs] = int(runs)
    return got


class DataSoak(PipelineSoak):
    """One run of a ``DataPlan`` in ``workdir``."""

    queues = QUEUES
    worker_module = "tests.data_chaos"

    def __init__(self, *, plan: DataPlan, workdir: Path) -> None:
        super().__init__(plan=plan, workdir=workdir, figures=DataFigures())
        self.plan: DataPlan = plan
        self.figures: DataFigures

    def config(self) -> dict[str, Any]:
        return chain_config()

    def messages(self) -> list[Message[Any]]:
        """Each chain's ``encode(n)`` message 1-3 times (the same message), shuffled."""
        chains = [Message("encode", "encode", (), {"n": n}, {}) for n in range(self.plan.chains)]
        sends = [m for m in chains for _ in range(self.rng.randint(*self.plan.copies))]
        self.rng.shuffle(sends)
        return sends

    def worker_args(self) -> list[str]:
        return [str(self.plan.die_every)]

    def finished(self, r: redis.Redis) -> bool:
        """Stage 3 ran in every chain."""
        pipe = r.pipeline(transaction=False)
        for n in range(self.plan.chains):
            pipe.exists(f"{GOT}3/{n}")
        return all(pipe.execute())

    def progress(self, r: redis.Redis) -> str:
        done = sum(bool(r.exists(f"{GOT}3/{n}")) for n in range(self.plan.chains))
        return f"chains done {done}/{self.plan.chains}, {super().progress(r)}"

    def check(self, r: redis.Redis) -> None:
        """One message per chain and stage, each run given the right data; once each in
        the raw lists; nothing left behind."""
        problems: list[str] = []
        first = Counter(k.decode().split()[0] for k in r.hkeys(RUNS_1))
        for n in range(self.plan.chains):
            if first[str(n)] != 1:
                problems.append(f"chain {n}: stage 1 ran as {first[str(n)]} messages")
            for stage, wanted in ((2, expected(n)[0]), (3, expected(n)[1])):
                got = received(r, stage, n)
                ids = {message_id for message_id, _ in got}
                if len(ids) != 1:
                    problems.append(f"chain {n}: stage {stage} made {len(ids)} messages {ids}")
                wrong = {kwargs for _, kwargs in got if json.loads(kwargs) != wanted}
                if wrong:
                    problems.append(f"chain {n}: stage {stage} got {wrong}, not {wanted}")
        for raw, which in ((ENCODED, 2), (THUMBS, 3)):
            lines = Counter(e.decode() for e in r.lrange(raw, 0, -1))
            wanted = Counter(expected(n)[which] for n in range(self.plan.chains))
            if lines != wanted:
                extra, missing = lines - wanted, wanted - lines
                problems.append(f"{raw}: extra {dict(extra)}, missing {dict(missing)}")
        assert not problems, "\n".join(problems[:20])
        stats = {k.decode(): int(v) for k, v in r.hgetall(f"{INPUT}/stats").items()}
        assert stats.get("thumb|failed", 0) == 0 and stats.get("publish|failed", 0) == 0, stats
        assert r.llen(f"{INPUT}/dead") == 0 and r.llen(f"{INPUT}/failed") == 0
        assert [r.zcard(s) for s in SETS] == [0, 0]  # every dedup entry released
        dead = {q: r.zcard(f"dramatiq:{q}.XQ") for q in QUEUES}
        assert not any(dead.values()), f"Dramatiq dead-lettered {dead}"
        self.figures.stage_1_runs = sum(int(v) for v in r.hvals(RUNS_1))
        for stage in (2, 3):
            runs = sum(sum(received(r, stage, n).values()) for n in range(self.plan.chains))
            setattr(self.figures, f"stage_{stage}_runs", runs)


def worker_main(argv: list[str]) -> int:
    """``worker URL LOSSY_URL RULES THREADS DIE_EVERY``: runs until SIGTERM.

    Completion's client goes through ``LOSSY_URL``; with ``RULES`` (a config file),
    done events are routed in the worker (see ``worker_broker``). After about one
    message in ``DIE_EVERY`` (0: never), the process SIGKILLs itself right after
    Completion wrote the message's done event (or committed it, routed inline) and
    before the message is acknowledged: the worst moment, which a kill from outside
    hits by chance only. ``Redelivery`` then runs the message again.
    """
    import dramatiq
    from dramatiq import Middleware
    from dramatiq.middleware import CurrentMessage

    from resc_dramatiq.worker.completion import Completion

    url, lossy_url, rules, threads, every = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    broker = worker_broker(url, lossy_url, rules, lossy=True)
    r: redis.Redis = broker.client
    dice = random.Random()

    class DieAfterDone(Middleware):
        """Before Completion in the list: its ``after_`` hook runs after Completion's."""

        def after_process_message(self, broker: Any, message: Any, **_: Any) -> None:
            if every and dice.randrange(every) == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    broker.add_middleware(DieAfterDone(), before=Completion)

    def record(stage: int, n: str, kwargs: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None
        field = f"{message.message_id} {json.dumps(kwargs, sort_keys=True)}"
        r.hincrby(f"{GOT}{stage}/{n}", field, 1)

    @dramatiq.actor(broker=broker, queue_name="encode", done_event="enc/${n}", done_data="result")
    def encode(n: int) -> dict[str, Any]:
        message = CurrentMessage.get_current_message()
        assert message is not None
        r.hincrby(RUNS_1, f"{n} {message.message_id}", 1)
        return {"path": f"/v/{n}.mp4", "size": 3 * n}

    @dramatiq.actor(
        broker=broker,
        queue_name="thumb",
        done_data=lambda result, message: {**result, "of": message.kwargs["n"]},
    )
    def thumb(n: str, path: str, size: int) -> dict[str, Any]:
        record(2, n, {"n": n, "path": path, "size": size})
        return {"thumb": f"{path}.jpg", "area": 2 * size}

    @dramatiq.actor(broker=broker, queue_name="publish", done_event=False)
    def publish(n: str, payload: dict[str, Any]) -> None:
        record(3, n, {"n": n, "payload": payload})

    del encode, thumb, publish  # declared on the broker; the worker finds them there
    return work_until_sigterm(broker, threads=threads)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
