"""The run-time flow behind `model.py`: fingerprint -> select -> linear probe -> fine-tune.

First `train` call: decode a first sample of the training data, fingerprint a batch of it, let
the selector rank the known datasets and take the best-ranked one whose configuration never
crashed in the matrix; fit a logistic-regression probe on frozen features (the fingerprint
network's, or the bundle's probe network's) so that the first `test` answers within seconds. The
second call decodes the training set within a share of the time left, refits the probe on more of
it, and starts fine-tuning; later calls fine-tune the selected configuration in growing time
slices. Each `test` returns whichever of probe and network scores better on a held-out part of the
probe sample. Training stops early enough to leave time for `test` (its
duration is measured), and `done_training` is set when time is nearly out or validation has
stopped improving.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

import learner  # noqa: F401  (triton guard before torch)
from learner.config import TrainConfig

__all__ = ["RuntimeSettings", "AnytimeClassifier", "load_settings"]

logger = logging.getLogger(__name__)
BUILTIN_DEFAULT = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=64, batch_size=32,
                              learning_rate=1e-3, name="builtin-default")


@dataclass(frozen=True)
class RuntimeSettings:
    """Knobs of the run-time flow (environment AUTODL_SETTINGS=file.json or bundle/settings.json).

    Attributes:
        config: force one configuration (its name in the bundle, or "default"): selection off.
        fingerprint_batch: samples fingerprinted for selection (the test batch size of the paper).
        probe_samples: training samples decoded for the probe per chunk (up to 4 chunks).
        val_fraction: share of the probe sample held out to compare probe and network.
        first_slice, growth: the first fine-tuning slice (s) and its growth factor per round.
        safety: seconds kept in reserve on top of the measured test time.
        patience: rounds without validation gain before `done_training`.
        cache_bytes: memory cap of the decoded training set (the rest is streamed).
        decode_share: share of the time left that decoding the training set may take before
            fine-tuning starts (estimated from the probe sample's decode rate; the rest is streamed).
        refit_share, refit_samples: time share and sample cap of refitting the probe on more of the
            training set before fine-tuning starts (skipped unless it can use twice the first sample).
        seed: randomness of sampling and training.
    """

    config: str | None = None
    fingerprint_batch: int = 64
    probe_samples: int = 512
    val_fraction: float = 0.15
    first_slice: float = 5.0
    growth: float = 1.6
    safety: float = 5.0
    patience: int = 4
    cache_bytes: int = 4 * 1024**3
    decode_share: float = 0.25
    refit_share: float = 0.1
    refit_samples: int = 5000
    seed: int = 0


def load_settings(bundle_dir: str) -> RuntimeSettings:
    """Settings from AUTODL_SETTINGS (a JSON file), else bundle/settings.json; AUTODL_CONFIG forces a config."""
    path = os.environ.get("AUTODL_SETTINGS") or os.path.join(bundle_dir, "settings.json")
    values: dict[str, Any] = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable settings ({exc})") from exc
        unknown = set(values) - {f.name for f in fields(RuntimeSettings)}
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    settings = RuntimeSettings(**values)
    if os.environ.get("AUTODL_CONFIG"):
        settings = replace(settings, config=os.environ["AUTODL_CONFIG"])
    return settings


class _Probe:
    """Logistic regression on frozen features; per-column for multilabel, constant where a label never varies."""

    def __init__(self, multilabel: bool, num_classes: int, seed: int):
        self.multilabel, self.k, self.seed = multilabel, num_classes, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Probe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x)
        z = self.scaler.transform(x)
        self.prior = y.mean(0).astype(np.float32)
        if self.multilabel:
            self.models = {}
            for k in range(self.k):
                if 0 < y[:, k].sum() < len(y):
                    self.models[k] = LogisticRegression(C=0.5, max_iter=300, random_state=self.seed).fit(z, y[:, k])
        else:
            labels = y.argmax(1)
            self.model = (LogisticRegression(C=0.5, max_iter=300, random_state=self.seed).fit(z, labels)
                          if len(np.unique(labels)) > 1 else None)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(x)
        out = np.tile(self.prior, (len(x), 1))
        if self.multilabel:
            for k, model in self.models.items():
                out[:, k] = model.predict_proba(z)[:, 1]
        elif self.model is not None:
            out[:] = 1e-6
            out[:, self.model.classes_] = self.model.predict_proba(z)
        return out.astype(np.float32)


class AnytimeClassifier:
    """Everything `Model` does, given the metadata and a bundled portfolio folder."""

    def __init__(self, metadata: Any, bundle_dir: str, settings: RuntimeSettings | None = None):
        from fingerprint.selectors import load_selector
        from fingerprint.store import Store
        from portfolio.manifest import FingerprintSpec, Manifest, ManifestError

        self.settings = settings or load_settings(bundle_dir)
        self.metadata = metadata
        self.num_classes = metadata.get_output_size()
        self.bundle_dir = bundle_dir
        self.done_training = False
        s = self.settings
        try:
            self.manifest = Manifest.load(bundle_dir)
            self.extractor = self._extractor(self.manifest.fingerprint)
            self.probe_extractor = (self._extractor(self.manifest.probe) if self.manifest.probe
                                    else self.extractor)
            self.store = Store.load(os.path.join(bundle_dir, self.manifest.store), expect=self.extractor.info)
            self.selector = load_selector(os.path.join(bundle_dir, self.manifest.selector))
        except (ManifestError, ValueError, OSError) as exc:
            if s.config != "default":
                raise
            logger.warning("[init] bundled portfolio unusable (%s); using the built-in default as asked", exc)
            self.manifest, self.selector = None, None
            self.extractor = self.probe_extractor = self._extractor(FingerprintSpec("resnet18", None, 64))
        self.config = self._forced_config() if s.config else None
        self.rng = np.random.default_rng(s.seed)
        self.match: list[tuple[str, float]] = []
        self.probe = self.trainer = None
        self.val_idx = self.test_x = self.test_features = None
        self.probe_val = self.net_val = -np.inf
        self.use_network = False
        self.test_seconds = None
        self.slice = s.first_slice
        self.stale_rounds = 0
        self.rounds = 0

    def _extractor(self, spec: Any) -> Any:
        from fingerprint.extractor import FeatureExtractor

        weights = os.path.join(self.bundle_dir, "weights", spec.weights) if spec.weights else None
        return FeatureExtractor(spec.backbone, weights, resolution=spec.resolution, frames=spec.frames, seed=spec.seed)

    # -- configuration --------------------------------------------------------------------------
    def _config_file(self, relative: str) -> TrainConfig:
        return TrainConfig.load(os.path.join(self.bundle_dir, relative))

    def _forced_config(self) -> TrainConfig:
        name = self.settings.config
        if self.manifest is None:
            return BUILTIN_DEFAULT
        if name == "default":
            return self._config_file(self.manifest.default)
        relative = f"configs/{name}.json"
        if not os.path.isfile(os.path.join(self.bundle_dir, relative)):
            raise ValueError(f"forced configuration {name!r}: {os.path.join(self.bundle_dir, relative)} not found")
        return self._config_file(relative)

    def _select(self, x: np.ndarray, meta: dict[str, float]) -> TrainConfig:
        """Fingerprint a random batch of the probe sample and take the best-ranked safe configuration."""
        batch = self.extractor.extract(
            x[np.sort(self.rng.choice(len(x), size=min(self.settings.fingerprint_batch, len(x)), replace=False))])
        if len(batch) < self.selector.min_batch:
            logger.warning("[select] %d samples are too few for the selector: default configuration", len(batch))
            return self._config_file(self.manifest.default)
        self.match = self.selector.rank(batch, meta)
        for dataset, score in self.match:
            relative = self.manifest.configs.get(dataset)
            if relative and relative not in self.manifest.unsafe:
                logger.info("[select] most similar known dataset: %s (score %.2f); configuration %s",
                            dataset, score, relative)
                return self._config_file(relative)
        logger.warning("[select] no safe configuration among the matches: default configuration")
        return self._config_file(self.manifest.default)

    # -- data -----------------------------------------------------------------------------------
    def _read_probe_sample(self, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        """The first samples in dataset order; four times as many when fewer than half the classes appear
        (datasets stored sorted by class)."""
        from metadata.arrays import to_arrays

        size = (max(self.extractor.resolution, self.probe_extractor.resolution),) * 2
        arrays = to_arrays(dataset, size=size, max_samples=self.settings.probe_samples)
        seen = int(((arrays.y > 0).sum(0) > 0).sum())
        if not arrays.complete and seen * 2 < self.num_classes:
            arrays = to_arrays(dataset, size=size, max_samples=4 * self.settings.probe_samples)
        return arrays.x, arrays.y

    def _meta(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        from fingerprint.store import meta_features_of

        row, col = self.metadata.get_matrix_size()
        size = (row, col) if row > 0 and col > 0 else (x.shape[2], x.shape[3])
        return meta_features_of(self.metadata, y, size)

    # -- the platform calls ----------------------------------------------------------------------
    def train(self, dataset: Any, remaining_time_budget: float | None = None) -> None:
        from learner.data import is_multilabel, stratified_split

        start = time.time()
        remaining = float("inf") if remaining_time_budget is None else remaining_time_budget
        s = self.settings
        if self.probe is None:  # first round: probe sample, fingerprint, selection, probe
            x, y = self._read_probe_sample(dataset)
            self.decode_rate = len(x) / max(time.time() - start, 1e-3)  # samples/s, an upper bound of the cost
            self.probe_count = len(x)  # the full training set must cache at least these (validation inside)
            if self.config is None:
                self.config = self._select(x, self._meta(x, y)) if self.selector else BUILTIN_DEFAULT
            tick = time.time()
            features = self.probe_extractor.extract(x)
            self.feature_rate = len(x) / max(time.time() - tick, 1e-3)
            train_idx, self.val_idx = stratified_split(y, s.val_fraction, s.seed) if len(y) >= 4 else (
                np.arange(len(y)), np.arange(len(y)))
            self.multilabel = is_multilabel(y)
            tick = time.time()
            self.probe = _Probe(self.multilabel, self.num_classes, s.seed).fit(features[train_idx], y[train_idx])
            self.probe_fit_rate = len(train_idx) / max(time.time() - tick, 1e-3)
            self.val_x, self.val_y, self.val_features = x[self.val_idx], y[self.val_idx], features[self.val_idx]
            self.probe_val = self._val_score(self.probe.predict(self.val_features))
            logger.info("[train] probe on %d samples in %.1f s (validation NAUC %.3f); configuration %s",
                        len(train_idx), time.time() - start, self.probe_val, self.config.name or self.config.backbone)
            return
        reserve = (self.test_seconds or 5.0) * 1.5 + s.safety
        if self.trainer is None:
            if remaining - reserve < 2 * s.first_slice:
                self.done_training = True
                return
            self._start_fine_tuning(dataset, remaining - reserve)
        available = remaining - (time.time() - start) - reserve
        if available < 1.0:
            self.done_training = True
            return
        stats = self.trainer.train_for(min(self.slice, available))
        self.slice *= s.growth
        self.rounds += 1
        score = self._val_score(self.trainer.predict(self.val_x))  # resized on the fly
        if score > self.net_val + 1e-4:
            self.net_val, self.stale_rounds = score, 0
        else:
            self.stale_rounds += 1
        self.use_network = self.net_val >= self.probe_val
        logger.info("[train] round %d: %d steps in %.1f s, validation NAUC %.3f (probe %.3f)", self.rounds,
                    stats.steps, stats.seconds, score, self.probe_val)
        if self.stale_rounds >= s.patience or remaining - (time.time() - start) - reserve < 1.0:
            self.done_training = True

    def _val_score(self, prediction: np.ndarray) -> float:
        from scoring.metrics import ScoringError, nauc

        try:
            return nauc(self.val_y, prediction)
        except ScoringError:  # a validation set without both classes in any column says nothing
            return 0.0

    def _start_fine_tuning(self, dataset: Any, available: float) -> None:
        """Decode the training set (as much as `decode_share` of the time left allows; the rest is
        streamed during training) and build the trainer of the selected configuration."""
        from learner.data import TrainSet, load_train_set
        from learner.trainer import Trainer

        c, s = self.config, self.settings
        total = self.metadata.size()
        affordable = max(int(self.decode_rate * s.decode_share * available), self.probe_count)
        max_samples = affordable if 0 < affordable < total else None
        if max_samples:
            logger.info("[train] decoding %d of %d training samples now (%.0f samples/s); streaming the rest",
                        max_samples, total, self.decode_rate)
        data = load_train_set(dataset, resolution=c.resolution, batch_size=c.batch_size, max_bytes=s.cache_bytes,
                              max_samples=max_samples, stream_rest=True, seed=s.seed)
        keep = np.setdiff1d(np.arange(len(data)), self.val_idx)  # the probe's validation samples stay out
        x, y = data.x[keep], data.y[keep]  # one copy, shared by the trainer and the probe refit
        self.trainer = Trainer(c, num_classes=self.num_classes, in_channels=x.shape[-1],
                               weights_dir=os.path.join(self.bundle_dir, "weights") if c.weights else None,
                               multilabel=self.multilabel, seed=s.seed)
        self.trainer.set_train_data(TrainSet(x, y, stream=data.stream, seed=s.seed))
        self._refit_probe(x, y, available)

    def _refit_probe(self, x: np.ndarray, y: np.ndarray, available: float) -> None:
        """Refit the probe on more of the decoded training set (as many samples as `refit_share` of the
        time left affords, at most `refit_samples`): the probe answers until the network beats it, so
        a better probe lifts the early, heavily weighted part of the learning curve. Kept only if it
        validates at least as well as the first one."""
        s = self.settings
        seconds_per_sample = 1.0 / self.feature_rate + 1.0 / self.probe_fit_rate
        n = min(len(x), s.refit_samples, int(s.refit_share * available / seconds_per_sample))
        if n < 2 * self.probe_count:  # too little gain for the time
            return
        start = time.time()
        idx = np.sort(self.rng.choice(len(x), size=n, replace=False))
        probe = _Probe(self.multilabel, self.num_classes, s.seed).fit(self.probe_extractor.extract(x[idx]), y[idx])
        score = self._val_score(probe.predict(self.val_features))
        logger.info("[train] probe refit on %d samples in %.1f s: validation NAUC %.3f (was %.3f)", n,
                    time.time() - start, score, self.probe_val)
        if score >= self.probe_val:
            self.probe, self.probe_val = probe, score

    def test(self, dataset: Any, remaining_time_budget: float | None = None) -> np.ndarray:
        from metadata.arrays import to_arrays

        start = time.time()
        if self.test_x is None:  # decoded once, at the resolution the network uses
            res = max(self.config.resolution, self.probe_extractor.resolution)
            self.test_x = to_arrays(dataset, size=(res, res)).x
        if self.use_network and self.trainer is not None:
            prediction = self.trainer.predict(self.test_x)
        else:
            if self.test_features is None:
                self.test_features = self.probe_extractor.extract(self.test_x)
            prediction = self.probe.predict(self.test_features)
        self.test_seconds = time.time() - start
        return prediction.astype(np.float32, copy=False)

