from decimal import Decimal

import pytest

from controlplane.api.quantity import milli_value, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1.5G", Decimal("1.5e9")),
        ("1e3", Decimal(1000)),
        ("0.1", Decimal("0.1")),
        ("1Ki", Decimal(1024)),
    ],
    ids=lambda v: str(v),
)
def test_kubernetes_quantities_parse_to_their_value(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "5x", "Mi", "1.2.3", " 1", "1 Mi", "1mi", "--1"])
def test_malformed_quantities_are_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


def test_milli_value_rounds_up() -> None:
    assert milli_value("250m") == 250
    assert milli_value("0.0001") == 1
    assert milli_value("2") == 2000


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e999999999", "exponent 999999999 is out of range"),
        ("1e-19", "exponent -19 is out of range"),
        ("9" * 65, "longer than 64 characters"),
        ("10Ei", "too large"),
    ],
)
def test_quantities_beyond_int64_are_refused_not_overflowed(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_quantity(text)
