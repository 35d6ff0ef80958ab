"""Room on a GPU for several models: the measured-free-memory rule and the LRU order."""

from __future__ import annotations

from supervisor.device_room import HEADROOM_BYTES, Resident, enough_room, victims_in_order

GIB = 2**30


def test_room_needs_the_weights_plus_headroom() -> None:
    assert enough_room(10 * GIB, 7 * GIB)
    assert not enough_room(8 * GIB, 7 * GIB)
    assert not enough_room(HEADROOM_BYTES, 1)


def test_unknown_size_never_counts_as_room() -> None:
    # before its first load a model's size is unknown: make room by offloading the others
    assert not enough_room(80 * GIB, None)


def test_least_recently_used_goes_first() -> None:
    order = victims_in_order([Resident("a", 30.0), Resident("b", 10.0), Resident("c", 20.0)])
    assert order == ["b", "c", "a"]
