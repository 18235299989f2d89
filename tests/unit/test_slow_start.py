"""Slow-start batches: a failing create stops the sync after one small batch."""

from __future__ import annotations

import pytest

from controlplane.controllers.podcontrol import slow_start


@pytest.mark.parametrize(
    ("count", "fail_from", "calls", "done"),
    [
        pytest.param(10, None, 10, 10, id="all-succeed-in-1-2-4-3"),
        pytest.param(500, 0, 1, 0, id="first-create-fails-one-call"),
        pytest.param(500, 4, 1 + 2 + 4, 4, id="fifth-fails-batch-of-4-finishes"),
        pytest.param(0, None, 0, 0, id="nothing-to-do"),
    ],
)
async def test_slow_start_stops_after_the_first_failing_batch(
    count: int, fail_from: int | None, calls: int, done: int
) -> None:
    made = 0

    async def create() -> None:
        nonlocal made
        made += 1
        if fail_from is not None and made > fail_from:
            raise RuntimeError("refused")

    ok, err = await slow_start(count, create)
    assert made == calls
    assert ok == done
    assert (err is None) == (fail_from is None)
