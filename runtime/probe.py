"""Linear models on fixed features (frozen-network features, downsampled pixels): answers within seconds."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["LinearProbe", "shift_prior"]


class LinearProbe:
    """Logistic regression on standardised features; per column for multilabel data, the prior
    where a label never varies (so every column has a defined score).

    Args:
        multilabel: one binary model per label instead of one multinomial model.
        num_classes: output dimension.
        seed: the solver's random state.
        C: inverse regularisation strength.
        tol: the solver's stopping tolerance (a looser one answers sooner; AUC barely moves).
        max_iter: the solver's iteration cap (per binary model for multilabel data).
    """

    def __init__(self, multilabel: bool, num_classes: int, seed: int = 0, C: float = 0.5, tol: float = 1e-4,
                 max_iter: int = 300):
        self.multilabel, self.num_classes, self.seed, self.C, self.tol = multilabel, num_classes, seed, C, tol
        self.max_iter = max_iter

    def _model(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol, random_state=self.seed)

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on standardised `x`; stopping at `max_iter` is the caller's choice, so not warned about."""
        self.scaler_ = StandardScaler().fit(x)
        z = self.scaler_.transform(x)
        self.prior_ = y.mean(0).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.multilabel:
                self.models_ = {k: self._model().fit(z, y[:, k]) for k in range(self.num_classes)
                                if 0 < y[:, k].sum() < len(y)}
            else:
                labels = y.argmax(1)
                self.model_ = self._model().fit(z, labels) if len(np.unique(labels)) > 1 else None
        return self

    def iterations(self) -> int:
        """The solver's iterations in the fit (the most of any binary model for multilabel data; 0 where
        only one class was seen: nothing to fit)."""
        models = list(self.models_.values()) if self.multilabel else [self.model_] if self.model_ is not None else []
        return max((int(np.max(m.n_iter_)) for m in models), default=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 `[N, num_classes]` scores."""
        z = self.scaler_.transform(x)
        out = np.tile(self.prior_, (len(x), 1))
        if self.multilabel:
            for k, model in self.models_.items():
                out[:, k] = model.predict_proba(z)[:, 1]
        elif self.model_ is not None:
            out[:] = 1e-6
            out[:, self.model_.classes_] = self.model_.predict_proba(z)
        return out.astype(np.float32)


def shift_prior(scores: np.ndarray, fit_prior: np.ndarray, target_prior: np.ndarray, multilabel: bool) -> np.ndarray:
    """Move a linear model's scores from the class frequencies of its fit to `target_prior` (Bayes' rule
    for a change of priors: Saerens et al., 2002).

    Why: out-of-fold predictions are pooled over folds, and the fold that holds a sample fitted on one sample
    fewer of its class than the other folds did, so its positives rank low in their column. With 2-3 samples
    per class this alone put the pixel model's out-of-fold NAUC on Monkeys at 0.08 (test NAUC 1.00); shifted,
    0.41. A class (or label) that never varied in the fit gets its target prior: the fit knew nothing of it.
    Multiclass rows are renormalised; multilabel columns are shifted in log-odds.
    """
    scores = scores.astype(np.float64)
    fit_prior, target_prior = fit_prior.astype(np.float64), target_prior.astype(np.float64)
    if multilabel:
        known = (fit_prior > 0) & (fit_prior < 1) & (target_prior > 0) & (target_prior < 1)
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        logit = np.log(p / (1 - p))
        shift = np.zeros_like(target_prior)
        shift[known] = (np.log(target_prior[known] / (1 - target_prior[known]))
                        - np.log(fit_prior[known] / (1 - fit_prior[known])))
        out = 1 / (1 + np.exp(-(logit + shift)))
        out[:, ~known] = target_prior[~known]
        return out.astype(np.float32)
    known = fit_prior > 0
    out = np.empty_like(scores)
    out[:, known] = scores[:, known] * (target_prior[known] / fit_prior[known])
    out[:, ~known] = target_prior[~known]
    total = out.sum(1, keepdims=True)
    return (out / np.where(total > 0, total, 1.0)).astype(np.float32)
