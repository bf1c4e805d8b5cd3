"""UploadBudget: bytes taken and released, refusals past the limit, held for a block."""

from __future__ import annotations

import pytest

from app.budget import UploadBudget
from app.errors import Overloaded


def test_bytes_past_the_limit_are_refused_and_nothing_is_taken() -> None:
    budget = UploadBudget(1000)
    budget.take(900)
    with pytest.raises(Overloaded):
        budget.take(101)
    assert budget.held == 900
    budget.check_room(100)
    with pytest.raises(Overloaded):
        budget.check_room(101)
    budget.release(900)
    assert budget.held == 0


def test_what_a_block_holds_is_released_when_it_ends() -> None:
    budget = UploadBudget(1000)
    with budget.holding() as take:
        take(600)
        with pytest.raises(Overloaded):
            take(600)
        assert budget.held == 600
    assert budget.held == 0
