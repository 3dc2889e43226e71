"""The precalculation layer of `mlp_moments`: batch statistics of every feature.

For a batch `[B, D]` it returns, per feature and in this order, the enabled statistics among:
mean, median, standard deviation, variance, skewness, excess kurtosis, and the p- and
(1-p)-quantiles (p in [0, 0.4]; p = 0 gives min and max). Population (biased) moments, as
`scipy.stats.skew/kurtosis` compute by default; a constant feature has skewness and kurtosis 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["STATISTICS", "batch_moments", "moments_dim"]

STATISTICS = ("mean", "median", "std", "var", "skew", "kurtosis", "quantiles")


def moments_dim(feature_dim: int, statistics: Sequence[str]) -> int:
    return feature_dim * sum(2 if s == "quantiles" else 1 for s in statistics)


def batch_moments(batch: np.ndarray, statistics: Sequence[str] = STATISTICS, p: float = 0.1) -> np.ndarray:
    """Statistics across the batch axis, concatenated: `[moments_dim]` (or `[M, ...]` for `[M, B, D]`)."""
    unknown = set(statistics) - set(STATISTICS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; choose from {STATISTICS}")
    if not statistics:
        raise ValueError("at least one statistic is needed")
    if not 0.0 <= p <= 0.4:
        raise ValueError(f"p must be in [0, 0.4], got {p}")
    x = np.asarray(batch, dtype=np.float64)
    axis = x.ndim - 2
    mean = x.mean(axis=axis)
    centred = x - np.expand_dims(mean, axis)
    var = (centred**2).mean(axis=axis)
    std = np.sqrt(var)
    safe = np.where(var > 1e-12, var, 1.0)
    out = []
    for name in statistics:
        if name == "mean":
            out.append(mean)
        elif name == "median":
            out.append(np.median(x, axis=axis))
        elif name == "std":
            out.append(std)
        elif name == "var":
            out.append(var)
        elif name == "skew":
            out.append(np.where(var > 1e-12, (centred**3).mean(axis=axis) / safe**1.5, 0.0))
        elif name == "kurtosis":
            out.append(np.where(var > 1e-12, (centred**4).mean(axis=axis) / safe**2 - 3.0, 0.0))
        else:
            out.append(np.quantile(x, p, axis=axis))
            out.append(np.quantile(x, 1 - p, axis=axis))
    return np.concatenate(out, axis=-1).astype(np.float32)
