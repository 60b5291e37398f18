"""The contract between Python and the Lua scripts is stated once, and each Lua block
exists once.

``commit.lua`` reads the fields ``store/contract.py`` declares (``h.<field>``) and its
keys by the roles declared there (``KEYS[k.<role>]``): each side is checked against the
other, so neither can change alone. The loader puts the constants and the shared
library in front of every script; the type check, Dramatiq's enqueue, Redis's clock,
marker forgetting and the task-writing loop are written in the library only. And
every script reaches Redis through the one wire primitive.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from resc_dramatiq.rules.batch import JoinHit
from resc_dramatiq.store import scripts, wire
from resc_dramatiq.store.contract import (
    COMMIT_KEYS,
    HEADER_FIELDS,
    HIT_EMPTY,
    JOIN_HIT_FIELDS,
    TASK_FIELDS,
    Status,
)
from resc_dramatiq.store.joins import JoinKeys, encode_hits
from resc_dramatiq.store.keys import DramatiqKeys
from resc_dramatiq.store.tasks import KeyList

PACKAGE = Path(scripts.__file__).parents[1]
LUA = PACKAGE / "store" / "lua"


def body(name: str) -> str:
    """A script's own text, its comments left out."""
    text = (LUA / f"{name}.lua").read_text()
    return "\n".join(line.split("--")[0] for line in text.splitlines())


def test_commit_lua_reads_every_declared_header_field_and_no_other() -> None:
    read = set(re.findall(r"\bh\.(\w+)", body("commit")))
    assert read == set(HEADER_FIELDS)


def test_commit_lua_names_its_keys_by_the_declared_roles_only() -> None:
    roles = set(re.findall(r"\bk\.(\w+)", body("commit")))
    assert roles == set(COMMIT_KEYS)
    assert "KEYS[" not in body("commit").replace("KEYS[k.", "").replace("KEYS[hit[H_GROUP]]", "")


def test_join_hits_are_read_by_the_declared_fields_and_sent_with_all_of_them() -> None:
    read = set(re.findall(r"\bhit\[H_(\w+)\]", body("commit") + body("library")))
    assert read == {name.upper() for name in JOIN_HIT_FIELDS}
    hit = JoinHit("member", 0, "r", "g", "m", 2, ("m", "n"), 1000, 5000, [], trace="t")
    [encoded] = encode_hits([hit], KeyList(), JoinKeys.of("done"), DramatiqKeys(), None)
    assert len(encoded) == len(JOIN_HIT_FIELDS)
    assert encoded[JOIN_HIT_FIELDS.index("member")] == "m"
    assert encoded[JOIN_HIT_FIELDS.index("deadline")] == 1000
    assert encoded[JOIN_HIT_FIELDS.index("trace")] == "t"


def test_a_join_hit_leaves_out_its_empty_fields_at_its_end_and_the_scripts_read_them_so() -> None:
    hit = JoinHit("member", 3, "r", "g", "m", 2, ttl_ms=5000, tasks=[])
    [encoded] = encode_hits([hit], KeyList(), JoinKeys.of("done"), DramatiqKeys(), None)
    assert len(encoded) == HIT_EMPTY  # deadline 0, no members, no payload ...: left out
    assert encoded[JOIN_HIT_FIELDS.index("event")] == 3
    hit.members = ("m", "n")
    [encoded] = encode_hits([hit], KeyList(), JoinKeys.of("done"), DramatiqKeys(), None)
    assert len(encoded) == JOIN_HIT_FIELDS.index("members") + 1  # the deadline kept, as 0
    scripts = body("commit") + body("library")
    for name in JOIN_HIT_FIELDS[HIT_EMPTY:]:
        reads = re.findall(rf"hit\[H_{name.upper()}\]( or \S+)?", scripts)
        assert reads and all(reads), f"hit[H_{name.upper()}] is read without a default"


def test_the_scripts_read_task_fields_by_the_declared_names() -> None:
    used = set()
    for path in LUA.glob("*.lua"):
        used |= set(re.findall(r"\bT_(\w+)", body(path.stem)))
    assert used <= {name.upper() for name in TASK_FIELDS}


def test_every_script_as_sent_starts_with_the_constants_python_declares() -> None:
    for name in scripts.NAMES:
        text = scripts.source(name)
        for status in Status:
            assert f"{status.name}" in text.split("\n-- library.lua")[0]
        assert "-- library.lua" in text
    apply = scripts.source("apply")
    assert apply.startswith("#!lua flags=allow-cross-slot-keys\n")
    assert not scripts.script("apply", flags=False).text.startswith("#!")


@pytest.mark.parametrize(
    "block",
    [
        r"redis\.call\('TYPE'",  # the key-type check
        r"redis\.call\('TIME'\)",  # Redis's clock
        r"'RPUSH'",  # Dramatiq's enqueue
        r"ZRANGEBYSCORE[^\n]*FORGET_CHUNK",  # forgetting old markers
        r"'ZADD', [^\n]*'NX'",  # the task-writing loop's dedup
        r"'HLEN'",  # a lineage bucket's bound (every script keeping records)
    ],
)
def test_each_shared_lua_block_is_written_once_in_the_library(block: str) -> None:
    where = [p.stem for p in LUA.glob("*.lua") if re.search(block, body(p.stem))]
    # commit.lua asks the marker's type itself, to answer a repeated message at once
    assert where == ["library"] or (sorted(where) == ["commit", "library"] and "TYPE" in block)


def test_no_script_reaches_redis_outside_the_wire_primitive() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "wire.py":
            continue
        text = path.read_text()
        for pattern in ("register_script", "evalsha", "EVALSHA", ".eval(", "script_load"):
            if pattern in text:
                offenders.append(f"{path.relative_to(PACKAGE)}: {pattern}")
    assert offenders == []


def test_calls_of_two_scripts_refused_with_noscript_are_loaded_and_each_run_once(
    r: redis.Redis,
) -> None:
    r.script_flush()  # what a restart does
    take = wire.Call(scripts.script("take"), ["in", "taken"], [5])
    heartbeat = wire.Call(scripts.script("heartbeat"), ["instances", "beats"], ["me", 1000])
    r.rpush("in", "a", "b")
    sent = wire.send(r, [take, heartbeat])
    events, expired = sent.replies()
    assert events == [b"b", b"a"] and expired == []
    assert r.lrange("taken", 0, -1) == [b"a", b"b"] and r.llen("in") == 0
    assert r.zcard("instances") == 1


def test_an_error_reply_is_raised_after_every_reply_was_read(r: redis.Redis) -> None:
    r.set("in", "not a list")
    take = wire.Call(scripts.script("take"), ["in", "taken"], [5])
    good = wire.Call(scripts.script("take"), ["other", "taken2"], [5])
    r.rpush("other", "x")
    sent = wire.send(r, [take, good])
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sent.replies()
    assert r.lrange("taken2", 0, -1) == [b"x"]  # the second call ran, its reply was read
    assert r.ping()  # the connection went back to the pool in a clean state


def test_each_script_is_sent_with_the_library_definitions_it_uses_and_no_others() -> None:
    defined_in_library = set(
        re.findall(r"^local (?:function )?(\w+)", body("library"), flags=re.MULTILINE)
    )
    for name in scripts.NAMES:
        sent = scripts.source(name)
        own = body(name)
        defined = set(re.findall(r"^local (?:function )?(\w+)", sent, flags=re.MULTILINE))
        code = re.sub(r"--[^\n]*", "", sent)  # its comments name things too
        used = set(re.findall(r"\b[A-Za-z_]\w*\b", code)) & defined_in_library
        assert used <= defined, f"{name}.lua is sent without {sorted(used - defined)}"
        library_part = sent.split("\n-- library.lua", 1)[1].split(f"\n-- {name}.lua\n", 1)[0]
        for fn in re.findall(r"^local function (\w+)", library_part, flags=re.MULTILINE):
            assert re.search(rf"\b{fn}\b", own) or re.search(
                rf"\b{fn}\b", library_part.replace(f"local function {fn}", "")
            ), f"{name}.lua is sent with {fn}, which nothing in it calls"
    take_functions = re.findall(r"^local function (\w+)", scripts.source("take"), re.MULTILINE)
    assert take_functions == ["chunked"]  # the one it calls: no join function, no type check
    for path in LUA.glob("*.lua"):  # comments are left out before names are looked for
        strings = re.findall(r"'[^'\n]*'|\"[^\"\n]*\"", body(path.stem))
        assert not [s for s in strings if "--" in s], f"{path.name}: '--' in a string"
