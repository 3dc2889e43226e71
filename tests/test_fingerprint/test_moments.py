"""The moments layer against numpy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fingerprint.moments import STATISTICS, batch_moments, moments_dim


def test_statistics_match_numpy_and_scipy() -> None:
    x = np.random.default_rng(0).gamma(2.0, size=(50, 6))
    out = batch_moments(x, STATISTICS, p=0.2)
    assert out.shape == (moments_dim(6, STATISTICS),) == (48,)
    expected = np.concatenate([x.mean(0), np.median(x, 0), x.std(0), x.var(0), stats.skew(x, 0),
                               stats.kurtosis(x, 0), np.quantile(x, 0.2, 0), np.quantile(x, 0.8, 0)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_switchable_and_batched() -> None:
    x = np.random.default_rng(1).normal(size=(3, 10, 4))
    out = batch_moments(x, ("mean", "quantiles"), p=0.0)
    assert out.shape == (3, 12)
    np.testing.assert_allclose(out[1], np.concatenate([x[1].mean(0), x[1].min(0), x[1].max(0)]), rtol=1e-6)


def test_constant_features_have_zero_shape_moments() -> None:
    out = batch_moments(np.ones((5, 2)), ("skew", "kurtosis"))
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(statistics=("mean", "mode")), "unknown statistics"),
    (dict(statistics=()), "at least one"),
    (dict(p=0.5), r"p must be in \[0, 0.4\]"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        batch_moments(np.zeros((4, 2)), **kwargs)
