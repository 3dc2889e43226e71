"""The AutoDL metrics as small pure functions (protocol §3.1-3.3).

Numbers equal the official scorer's (`score.py` of the AutoDL kit): NAUC = 2·AUC − 1 averaged
over the solution's valid columns, the soft "accuracy", and the ALC under the log time transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["ScoringError", "valid_columns", "nauc", "is_multiclass", "soft_accuracy", "transform_time",
           "auc_step", "alc"]


class ScoringError(ValueError):
    """A solution/prediction pair cannot be scored."""


def valid_columns(solution: np.ndarray) -> np.ndarray:
    """Boolean mask of the columns with at least one positive and one negative."""
    solution = np.asarray(solution, dtype=float)
    n = solution.shape[0]
    col_sum = solution.sum(axis=0)
    return ~(np.isclose(col_sum, 0) | np.isclose(col_sum, n))


def _as_2d(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=float)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def nauc(solution: np.ndarray, prediction: np.ndarray, *, name: str = "prediction") -> float:
    """2·AUC − 1, the unweighted mean of per-column rank AUCs (ties count ½) over valid columns.

    Raises:
        ScoringError: shapes differ, NaN in the prediction (named by `name`; the kit would rank
            it silently as the largest score), or no valid column at all.
    """
    solution, prediction = _as_2d(solution), _as_2d(prediction)
    if solution.shape != prediction.shape:
        raise ScoringError(f"{name}: shape {prediction.shape} differs from the solution's {solution.shape}")
    if np.isnan(prediction).any():
        rows = np.unique(np.argwhere(np.isnan(prediction))[:, 0])
        raise ScoringError(f"{name}: NaN in prediction rows {rows[:10].tolist()}"
                           f"{' ...' if len(rows) > 10 else ''}")
    columns = np.flatnonzero(valid_columns(solution))
    if len(columns) == 0:
        raise ScoringError("solution has no valid column (every class is absent or present in all rows)")
    # all valid columns in one ranking call (the engine scores 200-class validation sets inside its time budget)
    y = solution[:, columns]
    ranks = rankdata(prediction[:, columns], method="average", axis=0)
    n_pos = np.sum(y == 1, axis=0).astype(float)
    n_neg = np.sum(y < 1, axis=0).astype(float)
    aucs = (np.sum(np.where(y == 1, ranks, 0.0), axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(2 * np.mean(aucs) - 1)


def is_multiclass(solution: np.ndarray) -> bool:
    """True when every solution row is one-hot (the official test for computing accuracy)."""
    solution = _as_2d(solution)
    return bool(np.all(np.isin(solution, (0, 1))) and np.all(solution.sum(axis=1) == 1))


def soft_accuracy(solution: np.ndarray, prediction: np.ndarray) -> float:
    """Mean L1-normalised prediction mass on the true class (not argmax accuracy)."""
    solution, prediction = _as_2d(solution), _as_2d(prediction)
    mass = np.sum(solution * prediction, axis=1) / (np.sum(np.abs(prediction), axis=1) + 1e-15)
    return float(np.mean(mass))


def transform_time(t: float | np.ndarray, time_budget: float, t0: float) -> float | np.ndarray:
    """t~ = log(1 + t/t0) / log(1 + T/t0)."""
    return np.log(1 + np.asarray(t, dtype=float) / t0) / np.log(1 + time_budget / t0)


def auc_step(x: Sequence[float], y: Sequence[float]) -> float:
    """Area under a 'post' step function through the points (x_i, y_i)."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    return float(sum((x[i + 1] - x[i]) * y[i] for i in range(len(x) - 1)))


def alc(timestamps: Sequence[float], scores: Sequence[float], *, time_budget: float = 1200.0,
        t0: float = 60.0) -> float:
    """Area under the learning curve, as the official `LearningCurve.get_alc`.

    `timestamps` are seconds since the start of the budget, one per score. The curve is 0 before
    the first prediction, holds each score until the next one and the last one until t = T; with
    no prediction the ALC is 0. As in the official code, timestamps are neither sorted nor cut at
    T: a prediction stamped after T has t~ > 1 and its final term becomes negative.
    """
    if len(timestamps) != len(scores):
        raise ValueError(f"{len(timestamps)} timestamps for {len(scores)} scores")
    x = [0.0, *(float(transform_time(t, time_budget, t0)) for t in timestamps), 1.0]
    y = [0.0, *map(float, scores)]
    y.append(y[-1])
    return auc_step(x, y)
