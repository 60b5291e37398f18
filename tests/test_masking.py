"""Secrets of Redis URLs never printed: passwords holding ``/``, ``?``, ``@``, ``%`` or
``:``, and password-like query options, in every output (errors, logs, ``status``
tables and JSON, dashboard pages, metrics).

Each password is ``Wolf<c>Lamb``: neither word may show anywhere, so a password cut in
two by a parser and printed in part is caught too.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from click.testing import CliRunner
from pytest_redis.executor import RedisExecutor

from resc_dramatiq.cli import main
from resc_dramatiq.cli.common import load
from resc_dramatiq.cli.dashboard_cmds import site_of
from resc_dramatiq.dashboard import Settings, create_app
from resc_dramatiq.store.masking import safe_url, scrub
from tests.dashboard_server import write_rules
from tests.helpers import wait_for
from tests.procs import CLI, LoggedProcess

SPECIALS = ["/", "?", "@", "%", ":", "/?@%:#&"]
CONFIG = Path(__file__).parent.parent / "example_project" / "demo.conf.json"
UNREACHABLE = "127.0.0.1:1"  # nobody listens on port 1
LOCAL = "http://127.0.0.1:8060"  # the dashboard's own address, as a browser names it


def password(special: str) -> str:
    return f"Wolf{special}Lamb"


def assert_hidden(text: str) -> None:
    assert "Wolf" not in text and "Lamb" not in text, text


def encoded(special: str) -> str:
    """``default:<password percent-encoded>``: the session's Redis takes any password."""
    return f"default:{quote(password(special), safe='')}"


@pytest.mark.parametrize("special", SPECIALS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@h:1/0",
        "redis://user:{pw}@h:1/0?db=1",
        "rediss://user:{pw}@h:1",
        "unix://user:{pw}@/tmp/redis.sock?db=1",
        "redis+sentinel://:{pw}@h1:1,h2:2/mymaster/0",
        "redis+cluster://user:{pw}@h1:1,h2:2",
        "redis://h:1/0?password={pw}&db=1",
        "rediss://h:1/0?db=1&ssl_password={pw}",
        "redis+sentinel://h:1/m?sentinel_password={pw}&sentinel_username=s",
        "redis://h:1/0?api_token={pw}",
        "redis://h:1/0?Client_Secret={pw}",
        "redis://:{pw}@h:1/0?sentinel_password={pw}",
        "redis:/{pw}@h",  # no "://": whatever precedes the last @ is masked
    ],
)
def test_safe_url_masks_every_reading_of_a_password_written_raw(
    special: str, template: str
) -> None:
    assert_hidden(safe_url(template.format(pw=password(special))))


@pytest.mark.parametrize("special", SPECIALS)
def test_safe_url_masks_a_percent_encoded_password(special: str) -> None:
    assert safe_url(f"redis://{encoded(special)}@h:1/0") == "redis://default:***@h:1/0"


def test_safe_url_keeps_the_user_name_the_host_and_the_other_options() -> None:
    url = "rediss://alice:pw@h:1/2?ssl_password=x&db=2&sentinel_password=y"
    assert safe_url(url) == "rediss://alice:***@h:1/2?ssl_password=***&db=2&sentinel_password=***"
    assert (
        safe_url("redis://h:1/0?ssl_check_hostname=true") == "redis://h:1/0?ssl_check_hostname=true"
    )


def test_scrub_removes_a_password_quoted_in_a_message_as_written_or_decoded() -> None:
    url = "redis://:Wolf%2FLamb@h:1/0"
    assert_hidden(scrub(f"cannot reach {url}: AUTH Wolf/Lamb refused (Wolf%2FLamb)", url))


def run(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(argv))
    return result.exit_code, result.output


@pytest.mark.parametrize("special", ["/", "?", "#", "/?@%:"])
def test_a_password_cut_short_by_a_raw_slash_or_question_mark_is_refused_masked(
    special: str,
) -> None:
    url = f"redis://:{password(special)}@{UNREACHABLE}/0"
    code, output = run("status", str(CONFIG), "--redis-url", url)
    assert code == 2
    assert_hidden(output)
    assert output.startswith(f"error: invalid Redis URL redis://:***@{UNREACHABLE}/0: ")
    assert "percent-encode" in output and len(output.splitlines()) == 1


def test_the_issue_s_url_is_refused_with_its_password_masked() -> None:
    code, output = run("status", str(CONFIG), "--redis-url", f"redis://:hunt/er2@{UNREACHABLE}/0")
    assert code == 2
    assert "hunt" not in output and "er2" not in output


@pytest.mark.parametrize("special", ["@", "%", ":"])
def test_a_raw_at_percent_or_colon_in_a_password_is_masked_when_redis_is_unreachable(
    special: str,
) -> None:
    url = f"redis://user:{password(special)}@{UNREACHABLE}/0"
    code, output = run("status", str(CONFIG), "--redis-url", url)
    assert code == 1, output
    assert f"Redis at redis://user:***@{UNREACHABLE}/0 unreachable" in output
    assert_hidden(output)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://{UNREACHABLE}/0?password={{pw}}",
        f"rediss://{UNREACHABLE}/0?ssl_password={{pw}}",
        # refused before any Sentinel is asked (an unreachable one is retried for 16 s)
        f"redis+sentinel://{UNREACHABLE}/m?sentinel_password={{pw}}&x=1",
    ],
)
@pytest.mark.parametrize("special", ["/", "?", "%", ":"])
def test_password_options_are_masked_in_errors(url: str, special: str) -> None:
    url = url.format(pw=quote(password(special)))
    code, output = run("status", str(CONFIG), "--redis-url", url)
    assert code != 0
    assert_hidden(output)


def test_an_ssl_option_of_a_plain_url_is_refused_naming_it_with_its_value_masked() -> None:
    code, output = run(
        "status", str(CONFIG), "--redis-url", f"redis://{UNREACHABLE}/0?ssl_password=Wolf"
    )
    assert code == 2
    assert output == (
        f"error: invalid Redis URL redis://{UNREACHABLE}/0?ssl_password=***: unknown option(s) "
        "ssl_password (ssl_* options need rediss://)\n"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"redis://{UNREACHABLE}/0?bogus=1",
        f"rediss://{UNREACHABLE}/0?bogus=1",
        "unix:///tmp/nowhere.sock?bogus=1",
        f"redis+sentinel://{UNREACHABLE}/m?bogus=1",
        f"redis+cluster://{UNREACHABLE}?bogus=1",
    ],
)
def test_an_unknown_url_option_is_one_line_naming_it_without_a_traceback(
    url: str, tmp_path: Path
) -> None:
    config = tmp_path / "one-slot.json"  # a layout a cluster can serve
    config.write_text('{"watchers": [{"input_queue": "{in}", "rules": []}]}')
    code, output = run("status", str(config), "--redis-url", url)
    assert code == 2
    assert len(output.splitlines()) == 1 and "Traceback" not in output
    assert output.startswith("error: invalid Redis URL ") and "unknown option(s) bogus" in output


def test_an_unknown_scheme_is_refused_listing_the_sentinel_and_cluster_schemes() -> None:
    code, output = run("status", str(CONFIG), "--redis-url", "http://127.0.0.1:1/0")
    assert code == 2
    assert output == (
        "error: invalid Redis URL http://127.0.0.1:1/0: the scheme must be one of redis://, "
        "rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster://, "
        "rediss+cluster://\n"
    )


@pytest.mark.parametrize("special", SPECIALS)
def test_status_tables_and_json_mask_a_working_password(
    redis_proc: RedisExecutor, r: redis.Redis, special: str
) -> None:
    address = f"{redis_proc.host}:{redis_proc.port}"
    url = f"redis://{encoded(special)}@{address}/0?socket_timeout=5"
    runner = CliRunner()
    table = runner.invoke(main, ["status", str(CONFIG), "--redis-url", url], env={"COLUMNS": "250"})
    data = runner.invoke(main, ["status", str(CONFIG), "--redis-url", url, "--json"])
    assert table.exit_code == data.exit_code == 0, table.output + data.output
    masked = f"redis://default:***@{address}/0?socket_timeout=5"
    assert masked in table.output and f'"redis": "{masked}"' in data.output
    assert_hidden(table.output + data.output)
    assert quote(password(special), safe="") not in table.output + data.output


def test_dashboard_pages_mask_a_working_password(
    redis_proc: RedisExecutor, r: redis.Redis, tmp_path: Path
) -> None:
    address = f"{redis_proc.host}:{redis_proc.port}"
    url = f"redis://{encoded('/?@%:')}@{address}/0"
    site = site_of(load(str(write_rules(tmp_path))), url)
    app = create_app(site, Settings())
    paths = ("/pipeline", "/watchers", "/watchers/0", "/processes")

    async def pages() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
            return [await client.get(path) for path in paths]

    try:
        answers = asyncio.run(pages())
    finally:
        for w in site.watchers:
            w.client.close()
    for path, page in zip(paths, answers, strict=True):
        assert page.status_code == 200, path
        assert f"redis://default:***@{address}/0" in page.text, path
        assert_hidden(page.text)
        assert "%2F" not in page.text, path


def test_router_logs_and_metrics_mask_a_working_password(
    redis_proc: RedisExecutor, r: redis.Redis, tmp_path: Path
) -> None:
    address = f"{redis_proc.host}:{redis_proc.port}"
    url = f"redis://{encoded('/?@%:')}@{address}/0?health_check_interval=5"
    args = [CLI, "router", str(CONFIG), "--redis-url", url, "--log-level", "debug"]
    router = LoggedProcess([*args, "--metrics-port", "0"], log=tmp_path / "router.log")
    try:
        found = wait_for(
            lambda: re.search(r"metrics on (http://\S+/metrics)", router.output()),
            what="the metrics address in the log",
        )
        wait_for(lambda: "started" in router.output(), what="the router's start line")
        metrics = httpx.get(found.group(1), timeout=5).text
        r.lpush("global/done", "acq/7/8")
        wait_for(lambda: r.llen("trt/7/todo") == 1, what="the event routed")
        assert router.signal(signal.SIGTERM) == 0
    finally:
        router.stop()
    log = router.output()
    assert f"on redis://default:***@{address}/0?health_check_interval=5" in log
    assert_hidden(log + metrics)
    assert "%2F" not in log + metrics
