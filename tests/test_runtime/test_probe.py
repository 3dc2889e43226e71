"""The linear models and the prior shift of their out-of-fold predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from runtime.engine import _folds
from runtime.probe import LinearProbe, shift_prior
from scoring.metrics import nauc


def _pooled_out_of_fold(x: np.ndarray, y: np.ndarray, seed: int, shift: bool) -> np.ndarray:
    out = np.zeros_like(y)
    for fit, held in _folds(y, 5, seed, False):
        scores = LinearProbe(False, y.shape[1], 0, C=0.01, tol=1e-2).fit(x[fit], y[fit]).predict(x[held])
        out[held] = shift_prior(scores, y[fit].mean(0), y.mean(0), False) if shift else scores
    return out


@pytest.mark.parametrize("per_class", [2, 3])
def test_out_of_fold_scores_of_few_shot_classes_say_nothing_when_the_features_say_nothing(per_class: int) -> None:
    """Features without signal: an honest estimate is about 0. Pooled over folds, unshifted scores rank each
    sample's own class low (its fit had one sample of it fewer than the other folds' fits)."""
    raw, shifted = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        y = np.eye(10, dtype=np.float32)[np.repeat(np.arange(10), per_class)]
        x = rng.normal(size=(len(y), 20)).astype(np.float32)
        raw.append(nauc(y, _pooled_out_of_fold(x, y, seed, shift=False)))
        shifted.append(nauc(y, _pooled_out_of_fold(x, y, seed, shift=True)))
    assert np.mean(raw) < -0.4
    assert abs(np.mean(shifted)) < 0.12


def test_shift_prior_multiclass() -> None:
    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    same = shift_prior(scores, np.array([0.5, 0.25, 0.25]), np.array([0.5, 0.25, 0.25]), False)
    assert np.allclose(same, scores, atol=1e-6)  # no change of priors, no change
    moved = shift_prior(scores, np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.5, 0.25]), False)
    expected = scores * np.array([0.5, 2.0, 1.0])
    assert np.allclose(moved, expected / expected.sum(1, keepdims=True), atol=1e-6)
    # a class absent from the fit (scored as impossible by it) gets its target prior before renormalising
    unseen = shift_prior(np.array([[0.7, 0.3, 1e-6]]), np.array([0.6, 0.4, 0.0]), np.array([0.4, 0.4, 0.2]), False)
    assert np.allclose(unseen, np.array([[0.7 * 2 / 3, 0.3, 0.2]]) / (0.7 * 2 / 3 + 0.3 + 0.2), atol=1e-6)
    assert np.allclose(unseen.sum(1), 1.0)


def test_shift_prior_multilabel_in_log_odds() -> None:
    scores = np.array([[0.5, 0.9, 0.0], [0.2, 0.1, 0.0]], np.float32)
    out = shift_prior(scores, np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.5, 0.3]), True)
    odds = 0.25  # target odds 0.2/0.8 against fit odds 1
    assert out[0, 0] == pytest.approx(odds / (1 + odds), abs=1e-5)
    assert out[1, 0] == pytest.approx(0.25 * odds / (1 + 0.25 * odds), abs=1e-5)
    assert np.allclose(out[:, 1], scores[:, 1], atol=1e-5)  # same prior: unchanged
    assert np.allclose(out[:, 2], 0.3)  # a label that never varied in the fit: its target prior


@pytest.mark.parametrize("multilabel", [False, True])
def test_the_iteration_cap_stops_the_solver_without_a_warning(multilabel: bool) -> None:
    """A capped fit is the caller's choice: it stops at the cap, says how many iterations it used, and does not
    warn; uncapped, the same data need more iterations."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    y = (np.eye(4, dtype=np.float32)[labels] if not multilabel
         else (rng.random((300, 4)) < 0.3).astype(np.float32))
    x = rng.normal(size=(300, 50)).astype(np.float32) + 0.3 * (y @ rng.normal(size=(4, 50))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would fail the test
        capped = LinearProbe(multilabel, 4, 0, C=1.0, tol=1e-8, max_iter=3).fit(x, y)
    free = LinearProbe(multilabel, 4, 0, C=1.0, tol=1e-8, max_iter=300).fit(x, y)
    assert capped.iterations() == 3 < free.iterations()
    assert capped.predict(x).shape == (300, 4)
