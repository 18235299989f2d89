"""Kubernetes resource quantities: ``500m``, ``2``, ``128Mi``, ``1.5G``, ``1e3``."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_PATTERN = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")


MAX_QUANTITY_LENGTH = 64
"""No quantity a Kubernetes user writes is longer; the bound keeps the pattern and Decimal arithmetic cheap."""
MAX_QUANTITY = Decimal(2**63 - 1)
"""Kubernetes stores quantities as 64-bit integers (of milli-units at most); larger values are refused here
rather than overflowing later (``1e999999999`` raised ``decimal.Overflow``, an internal error)."""


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity string (at most ``MAX_QUANTITY_LENGTH`` characters, magnitude below 2^63);
    ``ValueError`` with the reason if it is not one."""
    if isinstance(text, str) and len(text) > MAX_QUANTITY_LENGTH:
        raise ValueError(f"{text[:20]!r}... is not a quantity: longer than {MAX_QUANTITY_LENGTH} characters")
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if not match or text != text.strip():
        raise ValueError(f"{text!r} is not a quantity (examples: 500m, 2, 128Mi, 1G)")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(f"{text!r} is not a quantity") from None
    if suffix in _BINARY:
        scaled = value * _BINARY[suffix]
    elif suffix in _DECIMAL:
        scaled = value * _DECIMAL[suffix]
    else:
        exponent = int(suffix[1:])
        if exponent > 18 or exponent < -18:  # beyond any int64 quantity, and Decimal would overflow for large ones
            raise ValueError(f"{text!r} is not a quantity: exponent {exponent} is out of range (-18..18)")
        scaled = value * (Decimal(10) ** exponent)
    if abs(scaled) > MAX_QUANTITY:
        raise ValueError(f"{text!r} is too large for a quantity (the limit is 2^63-1)")
    return scaled


def milli_value(text: str) -> int:
    """The quantity in thousandths, rounded up (CPU is usually handled in millicores)."""
    value = parse_quantity(text) * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
