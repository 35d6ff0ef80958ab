"""The upload budget's arithmetic, and the answers for a full budget and a client gone."""

from __future__ import annotations

from supervisor.http.body_budget import BodyBudget
from supervisor.http.errors import CLIENT_GONE, BodyBudgetFull, http_status


def test_the_budget_admits_what_fits_always_one_and_takes_back_what_ends() -> None:
    budget = BodyBudget(100)
    assert budget.reserve(60) and budget.reserve(40)
    assert not budget.reserve(1) and budget.refused == 1
    budget.release(60)
    assert budget.reserve(50) and budget.in_flight == 90
    budget.release(50)
    budget.release(40)
    assert budget.in_flight == 0
    assert budget.reserve(500)  # larger than the budget, but nothing else is in flight: admitted
    assert not budget.reserve(1)


def test_a_full_budget_is_503_with_retry_after_and_a_reset_is_499() -> None:
    status, _, headers = http_status(BodyBudgetFull("full"))
    assert status == 503 and headers == {"Retry-After": "1"}
    assert http_status(ConnectionResetError("gone"))[0] == CLIENT_GONE == 499
