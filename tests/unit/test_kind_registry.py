"""Every kind the API serves is complete everywhere a kind is looked up: adding one to ``kinds.KINDS``
without its validator, strategy, lookups or printer fails here rather than as an internal error later."""

from __future__ import annotations

import contextlib

import pytest

from cli import printers
from controlplane.api import kinds, validation
from controlplane.api.defaults import apply_defaults
from controlplane.api.errors import InvalidError
from controlplane.api.objects import meta
from controlplane.apiserver.strategy import Strategy, StrategyOptions, for_kind


@pytest.mark.parametrize("info", kinds.KINDS, ids=[k.kind for k in kinds.KINDS])
def test_every_kind_is_complete(info: kinds.KindInfo) -> None:
    assert info.kind in validation._BY_KIND, f"{info.kind} has no validator"
    strategy = for_kind(info, StrategyOptions())
    assert isinstance(strategy, Strategy) and strategy.info is info
    for name in (info.kind, info.plural, info.kind.lower(), *info.short_names):
        assert kinds.lookup(name) is info
    obj = info.message()
    assert kinds.of_message(obj) is info
    apply_defaults(obj)
    meta(obj).name = "x"
    if info.namespaced:
        meta(obj).namespace = "default"
    with contextlib.suppress(InvalidError):
        validation.validate(obj)  # an empty object may be invalid, but it is refused, never a crash
    assert len(printers.table([obj], info).splitlines()) == 2  # a header and the object's row
