"""The state machine's rules, without processes: the transition table and its guards."""

from __future__ import annotations

import pytest

from supervisor.core.lifecycle import ALLOWED, InvalidTransition, ModelLifecycle, State
from supervisor.core.settings import Settings


def test_every_state_can_be_released_and_reached() -> None:
    reachable = {State.UNLOADED} | {s for targets in ALLOWED.values() for s in targets}
    assert reachable == set(State)
    for state in State:
        assert state in ALLOWED


def test_invalid_transition_raises() -> None:
    lc = ModelLifecycle("ppocr", Settings(), "cpu")
    with pytest.raises(InvalidTransition):
        lc._set(State.RESIDENT)  # unloaded -> resident skips loading
    lc._set(State.LOADING)
    with pytest.raises(InvalidTransition):
        lc._set(State.CACHED)


def test_model_location_follows_state_and_device() -> None:
    lc = ModelLifecycle("ppocr", Settings(), "cuda:0")
    assert lc.model_location == "unloaded"
    lc.state = State.RESIDENT
    assert lc.model_location == "gpu"
    lc.state = State.CACHED
    assert lc.model_location == "cpu"
    assert ModelLifecycle("ppocr", Settings(), "cpu").segment.endswith("_ppocr")


def test_settings_refuse_unknown_policy() -> None:
    with pytest.raises(ValueError):
        Settings(offload_policy="sometimes")
