import pytest

from controlplane.api.durations import MAX_DURATION_LENGTH, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1h30m", 5400.0), ("250ms", 0.25), ("7", 7.0)])
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1" * (MAX_DURATION_LENGTH + 1) + "x", "5x", "1h 30m"])
def test_non_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
