"""Kubernetes' IntOrString values (``maxSurge: 1``, ``maxUnavailable: "25%"``) as protobuf ``Value``s."""

from __future__ import annotations

import math

from google.protobuf import struct_pb2


def scaled_value(value: struct_pb2.Value, total: int, *, round_up: bool) -> int:
    """The number a value stands for out of ``total``: a number as is, a percentage of ``total`` rounded up
    or down. Invalid values were refused by validation; anything else counts as 0."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value":
        text = value.string_value.strip()
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                return 0
            exact = pct * total / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        try:
            return int(text)
        except ValueError:
            return 0
    return 0


def surge_and_unavailable(
    max_surge: struct_pb2.Value, max_unavailable: struct_pb2.Value, replicas: int
) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for ``replicas``: surge rounds up, unavailability down, and both zero
    becomes unavailability 1, so a rollout can always move (Kubernetes' ``ResolveFenceposts``)."""
    surge = scaled_value(max_surge, replicas, round_up=True)
    unavailable = scaled_value(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable
