"""Durations as written in configs, and as shown in messages."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from open_ticket_ai.core.durations import Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
        ("45", 45.0),
        (" 1.5 ", 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("1.5h", 5400.0),
        ("30S", 30.0),
        ("PT5M", 300.0),
        ("PT30S", 30.0),
        ("PT1.5S", 1.5),
        ("P1D", 86400.0),
        ("P1DT2H", 93600.0),
        ("P1W", 604800.0),
        ("pt5m", 300.0),
    ],
)
def test_parse_duration_accepts_the_documented_forms(written: object, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


def test_parse_duration_returns_a_float_for_ints() -> None:
    assert type(parse_duration(30)) is float


@pytest.mark.parametrize(
    "written",
    ["", "  ", "soon", "5 parsecs", "5x", "m5", "1h30", "-5s", "P", "PT", "P1DT", "P-1D", "T5M"],
)
def test_parse_duration_rejects_bad_strings_naming_the_accepted_forms(written: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(written)
    message = str(info.value)
    assert repr(written) in message
    assert "'30s'" in message
    assert "'PT5M'" in message


@pytest.mark.parametrize("value", [None, True, False, [1], {"s": 1}])
def test_parse_duration_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError, match="number of seconds or a string like '30s'"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("inf"), float("nan"), 10**400])
def test_parse_duration_rejects_values_that_are_not_finite(value: object) -> None:
    with pytest.raises(ValueError, match="must be a finite number of seconds"):
        parse_duration(value)


def test_parse_duration_shortens_a_huge_value_in_its_message() -> None:
    with pytest.raises(ValueError, match="finite") as info:
        parse_duration("9" * 500)
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.25, "250ms"),
        (0, "0ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400 + 3661, "1d1h1m1s"),
    ],
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize("seconds", [0.5, 1, 59, 90, 3600, 5400, 93784])
def test_format_duration_round_trips_through_parse(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


class _Model(BaseModel):
    timeout: Duration


def test_duration_field_parses_strings() -> None:
    assert _Model.model_validate({"timeout": "1h30m"}).timeout == 5400.0


def test_duration_field_reports_a_bad_value_as_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="invalid duration 'soon'"):
        _Model.model_validate({"timeout": "soon"})


def test_duration_field_serializes_as_seconds() -> None:
    assert _Model.model_validate({"timeout": "5m"}).model_dump() == {"timeout": 300.0}


def test_duration_field_schema_allows_numbers_and_strings() -> None:
    schema = _Model.model_json_schema()["properties"]["timeout"]
    assert {option["type"] for option in schema["anyOf"]} == {"number", "string"}
