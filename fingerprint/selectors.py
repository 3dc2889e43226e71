"""Selectors: from a batch of a new dataset's feature vectors, rank the known datasets.

Every selector follows the scikit-learn estimator contract (`__init__` only stores
hyperparameters, `fit` returns self, learned state ends in `_`, `get_params`/`clone` work) and is
deterministic given `random_state`:

- `kmeans_vote`: k-means over all known samples, each cluster labelled with its majority dataset;
  every sample of the batch votes with its cluster's label.
- `mlp_vote`: a two-layer perceptron (Swish, dropout) classifies sample -> dataset; majority vote.
- `mlp_moments`: batch statistics of every feature (`fingerprint.moments`) -> the same perceptron,
  trained on many random batches of each known dataset.
- `metafeatures_knn`: nearest known dataset by standardised simple meta-features (zero-shot style).

`rank(batch, meta)` returns `[(dataset, score), ...]` best first (votes or probabilities summing
to 1). Fitted selectors are saved as `.npz` (arrays plus JSON) and loaded without pickles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted

from fingerprint.moments import STATISTICS, batch_moments
from fingerprint.store import META_FEATURES, Store

__all__ = ["Selector", "register_selector", "get_selector", "list_selectors", "save_selector", "load_selector",
           "KMeansVote", "MLPVote", "MLPMoments", "MetaFeaturesKNN", "BatchTooSmallError"]


class BatchTooSmallError(ValueError):
    """The batch has fewer samples than the selector needs."""


_SELECTORS: dict[str, type[Selector]] = {}  # registry name -> selector class


def register_selector(name: str):
    def decorate(cls: type[Selector]) -> type[Selector]:
        if name in _SELECTORS:
            raise ValueError(f"selector {name!r} is already registered")
        cls.registry_name = name
        _SELECTORS[name] = cls
        return cls
    return decorate


def list_selectors() -> list[str]:
    return sorted(_SELECTORS)


def get_selector(name: str, **params: Any) -> Selector:
    """A new, unfitted selector; `params` are its hyperparameters."""
    try:
        cls = _SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown selector {name!r}; registered: {', '.join(list_selectors())}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"selector {name!r}: {exc}") from None


class Selector(BaseEstimator):
    """Base class: `fit(store)` / `rank(batch, meta)`."""

    registry_name: ClassVar[str] = ""
    min_batch: ClassVar[int] = 1

    def fit(self, store: Store) -> Selector:
        raise NotImplementedError

    def rank(self, batch: np.ndarray, meta: dict[str, float] | None = None) -> list[tuple[str, float]]:
        raise NotImplementedError

    def predict(self, batch: np.ndarray, meta: dict[str, float] | None = None) -> str:
        return self.rank(batch, meta)[0][0]

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "names_")
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.feature_dim_:
            raise ValueError(f"{self.registry_name}: batch must be [B, {self.feature_dim_}], got {batch.shape}")
        if len(batch) < self.min_batch:
            raise BatchTooSmallError(f"{self.registry_name} needs a batch of at least {self.min_batch} samples, "
                                     f"got {len(batch)}")
        return batch

    def _ranking(self, scores: np.ndarray) -> list[tuple[str, float]]:
        order = np.argsort(-scores, kind="stable")
        return [(self.names_[i], float(scores[i])) for i in order]

    # -- persistence: plain arrays and JSON -------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


def _vote_scores(votes: np.ndarray, n: int, tie_break: np.ndarray) -> np.ndarray:
    """Vote fractions; ties broken (by less than one vote) with `tie_break` in [0, 1]."""
    counts = np.bincount(votes, minlength=n).astype(np.float64)
    return (counts + 1e-3 * tie_break) / (len(votes) + 1e-3)


@register_selector("kmeans_vote")
class KMeansVote(Selector):
    """Majority vote of the batch's k-means clusters (the paper's baseline).

    Args:
        n_clusters: clusters (5-40 in the paper's search space).
        n_init: k-means initialisations (10-30).
        max_iter: k-means iterations (100-500).
        random_state: seed.
    """

    def __init__(self, n_clusters: int = 20, *, n_init: int = 10, max_iter: int = 300, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, store: Store) -> KMeansVote:
        x, y = store.samples()
        self.names_ = store.names
        self.feature_dim_ = x.shape[1]
        k = min(self.n_clusters, len(x))
        km = KMeans(n_clusters=k, n_init=self.n_init, max_iter=self.max_iter, random_state=self.random_state).fit(x)
        self.centers_ = km.cluster_centers_.astype(np.float32)
        index = {n: i for i, n in enumerate(self.names_)}
        labels = np.array([index[n] for n in y])
        self.cluster_dataset_ = np.array([np.bincount(labels[km.labels_ == c], minlength=len(self.names_)).argmax()
                                          if np.any(km.labels_ == c) else 0 for c in range(k)])
        return self

    def _clusters(self, batch: np.ndarray) -> np.ndarray:
        d = ((batch[:, None, :] - self.centers_[None]) ** 2).sum(-1)
        return d.argmin(1)

    def rank(self, batch: np.ndarray, meta: dict[str, float] | None = None) -> list[tuple[str, float]]:
        batch = self._check_batch(batch)
        votes = self.cluster_dataset_[self._clusters(batch)]
        # tie-break: closeness of the batch mean to each dataset's nearest centre
        mean = batch.mean(0)
        dist = np.full(len(self.names_), np.inf)
        for c, ds in enumerate(self.cluster_dataset_):
            dist[ds] = min(dist[ds], float(((mean - self.centers_[c]) ** 2).sum()))
        tie = 1.0 / (1.0 + dist)
        return self._ranking(_vote_scores(votes, len(self.names_), tie))

    def _state(self) -> dict[str, np.ndarray]:
        return {"centers": self.centers_, "cluster_dataset": self.cluster_dataset_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.centers_, self.cluster_dataset_ = state["centers"], state["cluster_dataset"]


class _MLP:
    """Two-layer perceptron Linear -> Swish -> Dropout -> Linear, trained with Adam (torch)."""

    @staticmethod
    def train(x: np.ndarray, y: np.ndarray, n_classes: int, *, hidden: int, dropout: float, epochs: int,
              lr: float, batch_size: int, weight_decay: float, seed: int) -> dict[str, np.ndarray]:
        import torch

        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        mean, std = x.mean(0), x.std(0) + 1e-6
        xt = torch.tensor((x - mean) / std, dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.long)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.SiLU(), torch.nn.Dropout(dropout),
                                  torch.nn.Linear(hidden, n_classes))
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), batch_size):
                idx = perm[i:i + batch_size]
                loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
                "w1": net[0].weight.detach().numpy().T.copy(), "b1": net[0].bias.detach().numpy().copy(),
                "w2": net[3].weight.detach().numpy().T.copy(), "b2": net[3].bias.detach().numpy().copy()}

    @staticmethod
    def probabilities(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        h = (x - weights["mean"]) / weights["std"] @ weights["w1"] + weights["b1"]
        h = h * expit(h)  # Swish / SiLU, without overflow for large negative h
        logits = h @ weights["w2"] + weights["b2"]
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)


_MLP_STATE = ("mean", "std", "w1", "b1", "w2", "b2")


class _PerceptronMixin:
    """Training parameters and persistence shared by the perceptron selectors."""

    def _mlp_params(self) -> dict[str, Any]:
        return dict(hidden=self.hidden, dropout=self.dropout, epochs=self.epochs, lr=self.lr,
                    batch_size=self.batch_size, weight_decay=self.weight_decay, seed=self.random_state)

    def _state(self) -> dict[str, np.ndarray]:
        return dict(self.weights_)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = {k: state[k] for k in _MLP_STATE}


@register_selector("mlp_vote")
class MLPVote(_PerceptronMixin, Selector):
    """Sample -> dataset perceptron; the batch votes with each sample's argmax.

    Args:
        hidden: hidden units. dropout: dropout rate. epochs, lr, batch_size, weight_decay: training.
        random_state: seed.
    """

    def __init__(self, hidden: int = 256, *, dropout: float = 0.2, epochs: int = 30, lr: float = 1e-3,
                 batch_size: int = 128, weight_decay: float = 1e-5, random_state: int = 0):
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state

    def fit(self, store: Store) -> MLPVote:
        x, y = store.samples()
        self.names_ = store.names
        self.feature_dim_ = x.shape[1]
        index = {n: i for i, n in enumerate(self.names_)}
        self.weights_ = _MLP.train(x, np.array([index[n] for n in y]), len(self.names_), **self._mlp_params())
        return self

    def rank(self, batch: np.ndarray, meta: dict[str, float] | None = None) -> list[tuple[str, float]]:
        batch = self._check_batch(batch)
        p = _MLP.probabilities(self.weights_, batch)
        return self._ranking(_vote_scores(p.argmax(1), len(self.names_), p.mean(0)))

@register_selector("mlp_moments")
class MLPMoments(_PerceptronMixin, Selector):
    """Batch statistics of the features -> perceptron -> dataset probabilities.

    Args:
        statistics: which statistics the precalculation layer computes (see `fingerprint.moments`).
        p: quantile level in [0, 0.4] (p- and (1-p)-quantiles).
        train_batches: random batches drawn per known dataset to train on.
        min_batch_size, max_batch_size: size range of those batches (log-uniform).
        hidden, dropout, epochs, lr, batch_size, weight_decay: the perceptron.
        random_state: seed.
    """

    min_batch: ClassVar[int] = 2

    def __init__(self, statistics: Sequence[str] = STATISTICS, *, p: float = 0.1, train_batches: int = 200,
                 min_batch_size: int = 4, max_batch_size: int = 128, hidden: int = 256, dropout: float = 0.2,
                 epochs: int = 40, lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 1e-5,
                 random_state: int = 0):
        self.statistics = statistics
        self.p = p
        self.train_batches = train_batches
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _moments(self, batch: np.ndarray) -> np.ndarray:
        return batch_moments(batch, tuple(self.statistics), self.p)

    def fit(self, store: Store) -> MLPMoments:
        if self.min_batch_size < 2 or self.max_batch_size < self.min_batch_size:
            raise ValueError(f"need 2 <= min_batch_size <= max_batch_size, got {self.min_batch_size}, "
                             f"{self.max_batch_size}")
        rng = np.random.default_rng(self.random_state)
        self.names_ = store.names
        inputs, labels = [], []
        for i, entry in enumerate(store.entries.values()):
            feats = entry.features.astype(np.float32)
            self.feature_dim_ = feats.shape[1]
            sizes = np.exp(rng.uniform(np.log(self.min_batch_size), np.log(self.max_batch_size + 1),
                                       self.train_batches)).astype(int)
            for size in sizes:
                idx = rng.choice(len(feats), size=size, replace=size > len(feats))
                inputs.append(self._moments(feats[idx]))
                labels.append(i)
        self.weights_ = _MLP.train(np.stack(inputs), np.array(labels), len(self.names_), **self._mlp_params())
        return self

    def rank(self, batch: np.ndarray, meta: dict[str, float] | None = None) -> list[tuple[str, float]]:
        batch = self._check_batch(batch)
        return self._ranking(_MLP.probabilities(self.weights_, self._moments(batch)[None])[0])

@register_selector("metafeatures_knn")
class MetaFeaturesKNN(Selector):
    """Nearest known datasets by standardised simple meta-features (needs `meta` in `rank`).

    Counts (classes, sizes, train size) are compared on a log scale.

    Args:
        n_neighbors: unused beyond ordering; the ranking covers every known dataset by distance.
    """

    def __init__(self, n_neighbors: int = 1):
        self.n_neighbors = n_neighbors

    @staticmethod
    def _vector(values: np.ndarray) -> np.ndarray:
        v = np.array(values, dtype=np.float64)
        logged = [META_FEATURES.index(k) for k in ("classes", "height", "width", "train_size", "sequence_length")]
        v[..., logged] = np.log1p(np.maximum(v[..., logged], 0))
        return v

    def fit(self, store: Store) -> MetaFeaturesKNN:
        table, self.names_ = store.meta_table()
        self.feature_dim_ = store.info.feature_dim
        v = self._vector(table)
        self.mean_, self.scale_ = v.mean(0), v.std(0) + 1e-9
        self.table_ = (v - self.mean_) / self.scale_
        return self

    def rank(self, batch: np.ndarray | None, meta: dict[str, float] | None = None) -> list[tuple[str, float]]:
        check_is_fitted(self, "names_")
        if meta is None:
            raise ValueError("metafeatures_knn ranks by meta-features: pass meta=")
        missing = set(META_FEATURES) - set(meta)
        if missing:
            raise ValueError(f"meta-features missing: {', '.join(sorted(missing))}")
        q = (self._vector([meta[k] for k in META_FEATURES]) - self.mean_) / self.scale_
        d = np.sqrt(((self.table_ - q) ** 2).sum(1))
        return self._ranking(1.0 / (1.0 + d))

    def _state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "scale": self.scale_, "table": self.table_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mean_, self.scale_, self.table_ = state["mean"], state["scale"], state["table"]


def save_selector(selector: Selector, path: str) -> None:
    """Save a fitted selector: its hyperparameters and learned arrays (no code objects).

    `_set_state` restores the arrays; the header restores names and feature dimension."""
    check_is_fitted(selector, "names_")
    header = {"selector": selector.registry_name, "params": selector.get_params(), "names": list(selector.names_),
              "feature_dim": int(selector.feature_dim_)}
    np.savez(path, header=np.array(json.dumps(header)), **{f"state_{k}": v for k, v in selector._state().items()})


def load_selector(path: str) -> Selector:
    """Load a selector saved by `save_selector` (read with `allow_pickle=False`)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            state = {k[len("state_"):]: data[k] for k in data.files if k.startswith("state_")}
    except FileNotFoundError:
        raise ValueError(f"{path}: selector file not found") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a saved selector ({exc})") from exc
    params = header["params"]
    if "statistics" in params:
        params["statistics"] = tuple(params["statistics"])
    selector = get_selector(header["selector"], **params)
    selector.names_ = header["names"]
    selector._set_state(state)
    selector.feature_dim_ = header["feature_dim"]
    return selector
