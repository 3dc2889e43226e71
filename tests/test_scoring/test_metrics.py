"""NAUC, soft accuracy, the time transform and ALC against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scoring.metrics import ScoringError, alc, is_multiclass, nauc, soft_accuracy, transform_time, valid_columns

Y = np.array([[1], [0], [1], [0]])


@pytest.mark.parametrize("prediction, expected", [
    ([0.9, 0.1, 0.8, 0.3], 1.0),      # perfect ranking
    ([0.1, 0.9, 0.2, 0.8], -1.0),     # inverted
    ([0.5, 0.5, 0.5, 0.5], 0.0),      # constant: every pair a tie
    ([0.5, 0.5, 0.9, 0.1], 0.75),     # one tied pair of four: AUC 3.5 / 4
])
def test_nauc_single_column(prediction: list[float], expected: float) -> None:
    assert nauc(Y, np.array(prediction)[:, None]) == pytest.approx(expected)


def test_nauc_drops_constant_columns_and_macro_averages() -> None:
    solution = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]])
    prediction = np.array([[0.9, 0.5, 0.3, 0.1], [0.1, 0.5, 0.2, 0.9], [0.8, 0.5, 0.7, 0.5], [0.2, 0.5, 0.1, 0.2]])
    assert valid_columns(solution).tolist() == [True, True, False, False]
    # column 0: AUC 1; column 1 (constant prediction): AUC 0.5 -> mean 0.75 -> NAUC 0.5
    assert nauc(solution, prediction) == pytest.approx(0.5)
    valid = valid_columns(solution)
    expected = 2 * roc_auc_score(solution[:, valid], prediction[:, valid], average="macro") - 1
    assert nauc(solution, prediction) == pytest.approx(expected)


def test_nauc_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    solution = np.eye(5)[rng.integers(0, 5, 60)]
    prediction = np.round(rng.random((60, 5)), 1)  # rounding creates many ties
    expected = 2 * roc_auc_score(solution, prediction, average="macro") - 1
    assert nauc(solution, prediction) == pytest.approx(expected)


def test_nauc_errors() -> None:
    with pytest.raises(ScoringError, match=r"run\.predict_3: NaN in prediction rows \[1\]"):
        nauc(Y, np.array([[0.1], [np.nan], [0.3], [0.2]]), name="run.predict_3")
    with pytest.raises(ScoringError, match="no valid column"):
        nauc(np.ones((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ScoringError, match=r"shape \(4, 2\) differs"):
        nauc(Y, np.zeros((4, 2)))


def test_soft_accuracy_and_multiclass() -> None:
    solution = np.array([[1, 0], [0, 1]])
    assert soft_accuracy(solution, np.array([[0.75, 0.25], [0.5, 0.5]])) == pytest.approx(0.625)
    assert soft_accuracy(solution, np.array([[3.0, 1.0], [-1.0, 1.0]])) == pytest.approx((0.75 + 0.5) / 2)
    assert soft_accuracy(solution, np.zeros((2, 2))) == 0.0
    assert is_multiclass(solution)
    assert not is_multiclass(np.array([[1, 1], [0, 1]]))


@pytest.mark.parametrize("t, expected", [(10, 0.050632), (30, 0.133179), (60, 0.227670), (120, 0.360849),
                                         (300, 0.588519), (600, 0.787610), (1200, 1.0)])
def test_transform_time_reference_values(t: float, expected: float) -> None:
    assert transform_time(t, 1200, 60) == pytest.approx(expected, abs=1e-6)


def test_alc_hand_computed() -> None:
    # 0 until 60 s, 0.5 until 300 s, then 1.0 up to T.
    expected = 0.5 * (0.588519 - 0.227670) + 1.0 * (1 - 0.588519)
    assert alc([60, 300], [0.5, 1.0]) == pytest.approx(expected, abs=1e-5)
    assert alc([0.0], [0.8]) == pytest.approx(0.8)          # a prediction at t = 0 holds for all of [0, T]
    assert alc([], []) == 0.0                                # no prediction
    assert alc([15], [1.0], time_budget=300, t0=15) == pytest.approx(1 - math.log(2) / math.log(21))
    assert alc([15], [1.0], time_budget=300, t0=60) == pytest.approx(1 - math.log(1.25) / math.log(6))


def test_alc_beyond_budget_follows_official_code() -> None:
    """Timestamps after T are not cut: the result is the cut ALC plus (t~_n - 1)(s_{n-1} - s_n)."""
    t_late = float(transform_time(1500, 1200, 60))
    truncated = 0.4 * (1 - float(transform_time(600, 1200, 60)))
    assert alc([600, 1500], [0.4, 0.9]) == pytest.approx(truncated + (t_late - 1) * (0.4 - 0.9))
    with pytest.raises(ValueError, match="2 timestamps for 1 scores"):
        alc([1, 2], [0.5])
