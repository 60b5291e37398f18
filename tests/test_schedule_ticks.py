"""Specification: when a schedule ticks and which ticks are due, on an injected time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from resc_dramatiq.config.schedules import CATCH_UP_LIMIT
from resc_dramatiq.rules.schedule_ticks import CronTicks, EveryTicks, due, next_ticks

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def epoch(*fields: int, tz: ZoneInfo = PARIS, fold: int = 0) -> int:
    return int(datetime(*fields, tzinfo=tz, fold=fold).timestamp())  # type: ignore[misc]


def local(ticks: list[int], tz: ZoneInfo = PARIS) -> list[str]:
    return [datetime.fromtimestamp(t, tz).isoformat() for t in ticks]


def test_every_s_ticks_on_the_multiples_of_the_interval() -> None:
    assert next_ticks(EveryTicks(5), 1001, 3) == [1005, 1010, 1015]


def test_a_tick_is_later_than_the_time_it_is_computed_after() -> None:
    assert next_ticks(EveryTicks(5), 1005, 1) == [1010]
    assert next_ticks(CronTicks("0 * * * *", PARIS), epoch(2026, 5, 1, 10), 1) == [
        epoch(2026, 5, 1, 11)
    ]


def test_a_cron_minute_boundary_is_the_tick_itself() -> None:
    before = epoch(2026, 5, 1, 9, 59, 59)
    assert next_ticks(CronTicks("*/15 * * * *", PARIS), before, 2) == [
        epoch(2026, 5, 1, 10),
        epoch(2026, 5, 1, 10, 15),
    ]


def test_a_sixth_cron_field_is_the_seconds() -> None:
    ticks = CronTicks("* * * * * */20", PARIS)
    assert next_ticks(ticks, epoch(2026, 5, 1, 10), 3) == [
        epoch(2026, 5, 1, 10, 0, 20),
        epoch(2026, 5, 1, 10, 0, 40),
        epoch(2026, 5, 1, 10, 1, 0),
    ]


def test_cron_reads_the_schedule_timezone() -> None:
    [tick] = next_ticks(CronTicks("0 9 * * *", NEW_YORK), epoch(2026, 7, 1, tz=UTC), 1)
    assert datetime.fromtimestamp(tick, UTC).hour == 13  # 09:00 EDT


def test_a_0230_job_runs_at_0300_on_the_night_the_clock_skips_0200_to_0300() -> None:
    ticks = next_ticks(CronTicks("30 2 * * *", PARIS), epoch(2026, 3, 28, 12), 2)
    assert local(ticks) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_a_0230_job_runs_once_on_the_night_the_clock_repeats_0200_to_0300() -> None:
    ticks = next_ticks(CronTicks("30 2 * * *", PARIS), epoch(2026, 10, 24, 12), 2)
    assert local(ticks) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_started_in_the_second_pass_of_a_repeated_hour_the_0230_job_waits_for_tomorrow() -> None:
    second_pass = epoch(2026, 10, 25, 2, 15, fold=1)  # 02:15 CET, the 02:30 CEST run is past
    [tick] = next_ticks(CronTicks("30 2 * * *", PARIS), second_pass, 1)
    assert local([tick]) == ["2026-10-26T02:30:00+01:00"]


def test_new_york_skips_0230_to_0300_and_runs_its_repeated_0130_once() -> None:
    # New York skips 02:00-03:00 in March and repeats 01:00-02:00 in November
    spring = next_ticks(CronTicks("30 2 * * *", NEW_YORK), epoch(2026, 3, 7, 12, tz=NEW_YORK), 2)
    fall = next_ticks(CronTicks("30 1 * * *", NEW_YORK), epoch(2026, 10, 31, 12, tz=NEW_YORK), 2)
    assert local(spring, NEW_YORK) == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    assert local(fall, NEW_YORK) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_an_interval_cron_runs_by_elapsed_time_across_a_repeated_hour() -> None:
    ticks = next_ticks(CronTicks("*/30 * * * *", PARIS), epoch(2026, 10, 25, 1, 50), 5)
    assert local(ticks) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_an_interval_cron_has_no_tick_in_a_skipped_hour() -> None:
    ticks = next_ticks(CronTicks("*/30 * * * *", PARIS), epoch(2026, 3, 29, 1, 10), 3)
    assert local(ticks) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_the_tick_that_just_passed_is_due() -> None:
    assert due(EveryTicks(10), last=990, now=1003, catch_up="none", grace_s=60).fire == (1000,)


def test_nothing_is_due_before_the_next_tick() -> None:
    assert due(EveryTicks(10), last=1000, now=1009, catch_up="all", grace_s=60).fire == ()


def test_a_late_tick_within_the_grace_period_still_fires() -> None:
    found = due(EveryTicks(10), last=980, now=1025, catch_up="none", grace_s=60)
    assert found.fire == (990, 1000, 1010, 1020)
    assert not found.skipped


def test_a_new_schedule_fires_only_its_current_tick() -> None:
    assert due(EveryTicks(10), last=None, now=1025, catch_up="all", grace_s=60).fire == (1020,)


def test_a_new_schedule_whose_tick_is_past_the_grace_period_waits() -> None:
    assert due(EveryTicks(100), last=None, now=1070, catch_up="all", grace_s=60).fire == ()


def test_catch_up_none_drops_the_missed_ticks() -> None:
    found = due(EveryTicks(10), last=100, now=1005, catch_up="none", grace_s=20)
    assert found.fire == (990, 1000)
    assert found.skipped


def test_catch_up_last_fires_the_newest_missed_tick_once() -> None:
    found = due(EveryTicks(10), last=100, now=1005, catch_up="last", grace_s=20)
    assert found.fire == (980, 990, 1000)
    assert found.skipped


def test_catch_up_all_fires_every_missed_tick_oldest_first() -> None:
    found = due(EveryTicks(10), last=900, now=1005, catch_up="all", grace_s=20)
    assert found.fire == tuple(range(910, 1001, 10))
    assert not found.skipped


def test_catch_up_all_is_bounded_to_the_newest_ticks() -> None:
    found = due(EveryTicks(1), last=0, now=100_000, catch_up="all", grace_s=0)
    # the newest CATCH_UP_LIMIT missed ticks, then the one on time
    assert found.fire == tuple(range(100_000 - CATCH_UP_LIMIT, 100_001))
    assert found.skipped


def test_catch_up_all_of_a_cron_schedule_after_days_down() -> None:
    cron = CronTicks("30 2 * * *", PARIS)
    found = due(
        cron,
        last=epoch(2026, 3, 1, 2, 30),
        now=epoch(2026, 3, 5, 12),
        catch_up="all",
        grace_s=60,
    )
    assert local(list(found.fire)) == [f"2026-03-0{d}T02:30:00+01:00" for d in (2, 3, 4, 5)]


def test_catch_up_last_of_a_cron_schedule_fires_the_spring_forward_tick_at_0300() -> None:
    cron = CronTicks("30 2 * * *", PARIS)
    found = due(
        cron, last=epoch(2026, 3, 27, 2, 30), now=epoch(2026, 3, 29, 9), catch_up="last", grace_s=60
    )
    assert local(list(found.fire)) == ["2026-03-29T03:00:00+02:00"]
