from __future__ import annotations

import numpy as np

from app.postprocess import softmax, top_k


def test_softmax_is_stable_and_sums_to_one() -> None:
    probabilities = softmax(np.array([1000.0, 1001.0, 999.0], np.float32))
    assert np.isfinite(probabilities).all()
    assert probabilities.sum() == 1.0 or abs(probabilities.sum() - 1) < 1e-12
    assert probabilities.argmax() == 1


def test_top_k_orders_by_probability_then_index() -> None:
    p = np.array([0.1, 0.3, 0.3, 0.05, 0.25])
    assert top_k(p, 3) == [(1, 0.3), (2, 0.3), (4, 0.25)]
    assert [i for i, _ in top_k(p, 10)] == [1, 2, 4, 0, 3]


def test_ties_go_to_the_lower_index() -> None:
    uniform = np.full(1000, 1 / 1000)
    assert [i for i, _ in top_k(uniform, 5)] == [0, 1, 2, 3, 4]


def test_a_tie_at_position_k_keeps_the_lower_index() -> None:
    p = np.zeros(1000)
    p[[900, 10, 500, 7]] = [0.4, 0.3, 0.2, 0.2]  # 500 and 7 tie for the third place
    assert [i for i, _ in top_k(p, 3)] == [900, 10, 7]
