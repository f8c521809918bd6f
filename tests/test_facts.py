"""Derived facts: ages, windows and look-backs come from the record's own dates."""

from __future__ import annotations

import datetime as dt

import pytest

from screening.derivations import Lookback, age_on, birthday, minus_months

D = dt.date.fromisoformat
MONTHS = Lookback("calendar_months", months=2, days=60)
DAYS = Lookback("days", months=2, days=60)
CURRENT = Lookback("current", months=2, days=60)


def lookback_start(end: dt.date, lookback: Lookback) -> dt.date:
    return lookback.start(end)


def clear_date(last: dt.date, lookback: Lookback) -> dt.date:
    return lookback.clear_date(last)


@pytest.mark.parametrize("birth, ref, age", [
    ("1958-03-01", "2023-03-01", 65), ("1958-03-02", "2023-03-01", 64),
    ("1956-02-29", "2021-02-28", 64), ("1956-02-29", "2021-03-01", 65), ("1956-02-29", "2024-02-29", 68),
])
def test_completed_years(birth: str, ref: str, age: int) -> None:
    assert age_on(D(birth), D(ref)) == age


def test_birthday_of_a_leap_day_baby() -> None:
    assert birthday(D("1956-02-29"), 65) == D("2021-03-01")
    assert birthday(D("1956-02-29"), 68) == D("2024-02-29")


@pytest.mark.parametrize("enrollment, start", [
    ("2023-03-31", "2023-01-31"), ("2023-04-30", "2023-02-28"), ("2024-04-30", "2024-02-29"),
    ("2023-01-15", "2022-11-15"), ("2023-12-31", "2023-10-31"),
])
def test_calendar_month_lookback_clamps_to_month_end(enrollment: str, start: str) -> None:
    assert lookback_start(D(enrollment), MONTHS) == D(start)
    assert minus_months(D(enrollment), 2) == D(start)


def test_other_lookback_modes() -> None:
    assert lookback_start(D("2023-03-31"), DAYS) == D("2023-01-30")
    assert lookback_start(D("2023-03-31"), CURRENT) == D("2023-03-31")


@pytest.mark.parametrize("params", [MONTHS, DAYS, CURRENT], ids=["months", "days", "current"])
@pytest.mark.parametrize("last", ["2023-02-28", "2023-01-31", "2023-12-31", "2024-02-29", "2023-05-15"])
def test_clear_date_is_the_first_enrollment_that_no_longer_sees_the_dose(params: Lookback, last: str) -> None:
    day = D(last)
    clear = clear_date(day, params)
    assert lookback_start(clear, params) > day
    assert lookback_start(clear - dt.timedelta(days=1), params) <= day


def test_clear_date_example_from_the_spec() -> None:
    assert clear_date(D("2023-02-28"), MONTHS) == D("2023-05-01")
