"""The anytime engine: one schedule of phases on one clock, behind one fault boundary.

The platform alternates `train` and `test` and scores every answer; the engine decides what each
`train` call does from its phase and the time left:

1. `FIRST_ANSWER`: decode a first sample of the training data, ask the selector (if any) for the
   configurations to try, fit a linear probe on frozen features of the sample. The next `test`
   answers within seconds.
2. `PREPARE`: decode the training set (capped by the time left; the rest is streamed), refit the
   probe on more of it when time allows, build the network of the current configuration, and run
   a first fine-tuning slice.
3. `FINE_TUNE`: fine-tune in slices that grow each round; each `test` answers with whichever of
   probe and network validates better.
4. `DONE`: nothing left that helps: `done_training` is set.

All inputs, validation and test alike, are decoded once by the same function at one storage
resolution and resized to each predictor's resolution by the same code, so the validation score
that picks the answer is measured on inputs prepared exactly like the scored ones.

Fault boundary: once the probe has answered, no failure of later work (weights that do not load,
a backbone that cannot be built, a loss that stays non-finite, running out of memory, a failing
prediction) may cost the run. A failure is logged once with its error and recorded in `faults`;
the configuration is dropped, the next candidate is tried when time allows, and meanwhile `test`
answers with the best valid predictor. The offline objective (`portfolio.objective`) runs this
same engine on a held-out split of each known dataset, so what is tuned and ranked offline is what
runs at submission time.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import learner  # noqa: F401  (triton guard before torch)
from fingerprint.extractor import FeatureExtractor
from learner.config import TrainConfig
from learner.data import TrainSet, is_multilabel, load_train_set, stratified_split
from learner.trainer import Trainer
from metadata.arrays import to_arrays
from runtime.probe import LinearProbe
from runtime.settings import RuntimeSettings
from scoring.metrics import ScoringError, nauc

__all__ = ["Phase", "Clock", "Fault", "AnytimeEngine"]

logger = logging.getLogger(__name__)

Selector = Callable[[np.ndarray, np.ndarray], Sequence[TrainConfig]]


class Phase(enum.Enum):
    FIRST_ANSWER = "first answer"
    PREPARE = "prepare"
    FINE_TUNE = "fine-tune"
    DONE = "done"


class Clock:
    """Seconds left, from the platform's `remaining_time_budget` (None: no limit)."""

    def __init__(self) -> None:
        self.deadline = math.inf

    def set(self, remaining: float | None) -> None:
        self.deadline = math.inf if remaining is None else time.time() + float(remaining)

    def left(self) -> float:
        return self.deadline - time.time()


@dataclass(frozen=True)
class Fault:
    """A failure behind the fault boundary: where it happened and what it was."""

    phase: str
    config: str
    error: str


class AnytimeEngine:
    """The anytime run on one dataset: `train`, `test`, `done_training`, as the platform calls them.

    Args:
        num_classes: output dimension.
        train_size: training samples the dataset holds (from its metadata).
        probe_extractor: frozen network whose features the linear probe uses.
        candidates: configurations to fine-tune, best first; later ones are tried only after a fault.
        select: optional; called once with the first sample `(x, y)` (uint8 `[N,T,H,W,C]`, labels),
            returns the candidates to use instead (a failure keeps `candidates`).
        weights_dir: folder of the configurations' weights files.
        storage_resolution: side at which every input is decoded and kept.
        settings: the knobs.
    """

    def __init__(self, *, num_classes: int, train_size: int, probe_extractor: FeatureExtractor,
                 candidates: Sequence[TrainConfig], select: Selector | None = None, weights_dir: str | None = None,
                 storage_resolution: int, settings: RuntimeSettings | None = None):
        self.num_classes, self.train_size = num_classes, train_size
        self.probe_extractor = probe_extractor
        self.candidates = list(candidates)
        self.select = select
        self.weights_dir = weights_dir
        self.resolution = storage_resolution
        self.settings = settings or RuntimeSettings()
        self.clock = Clock()
        self.phase = Phase.FIRST_ANSWER
        self.faults: list[Fault] = []
        self.rng = np.random.default_rng(self.settings.seed)
        self.probe: LinearProbe | None = None
        self.trainer: Trainer | None = None
        self.train_data: TrainSet | None = None
        self.probe_val = self.net_val = -np.inf
        self.use_network = False
        self.test_x: np.ndarray | None = None
        self.test_features: np.ndarray | None = None
        self.network_answer: np.ndarray | None = None  # the live network's last test answer
        self.kept_answer: tuple[float, np.ndarray] | None = None  # (validation, answer) of a network that failed
        self.test_seconds: float | None = None
        self.slice = self.settings.first_slice
        self.stale_rounds = 0
        self.rounds = 0

    @property
    def done_training(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def config(self) -> TrainConfig | None:
        """The configuration being fine-tuned (or next to be)."""
        return self.candidates[0] if self.candidates else None

    # -- the platform calls ---------------------------------------------------------------------
    def train(self, dataset: Any, remaining_time_budget: float | None = None) -> None:
        self.clock.set(remaining_time_budget)
        if self.phase is Phase.FIRST_ANSWER:  # no answer yet: a failure here has nothing to protect
            self._first_answer(dataset)
            self.phase = Phase.PREPARE if self.candidates else Phase.DONE
            return
        if self.phase is Phase.DONE:
            return
        try:
            if self.phase is Phase.PREPARE:
                self._prepare(dataset)
            if self.phase is Phase.FINE_TUNE:
                self._fine_tune_round()
        except Exception as exc:  # noqa: BLE001 - the fault boundary: a valid answer exists
            self._fault(exc)

    def test(self, dataset: Any, remaining_time_budget: float | None = None) -> np.ndarray:
        start = time.time()
        if self.test_x is None:  # decoded once, like the validation sample
            self.test_x = to_arrays(dataset, size=(self.resolution,) * 2).x
        prediction = None
        if self.use_network and self.trainer is not None:
            try:
                prediction = self.trainer.predict(self.test_x)
                self.network_answer = prediction
            except Exception as exc:  # noqa: BLE001 - the fault boundary: fall back to the best valid answer
                self._fault(exc)
        if prediction is None and self.kept_answer is not None and self.kept_answer[0] > self.probe_val:
            prediction = self.kept_answer[1]  # a network that failed later: its last answer validated best
        if prediction is None:
            if self.test_features is None:
                self.test_features = self.probe_extractor.extract(self.test_x)
            prediction = self.probe.predict(self.test_features)
        self.test_seconds = time.time() - start
        return prediction.astype(np.float32, copy=False)

    # -- phases ---------------------------------------------------------------------------------
    def _first_answer(self, dataset: Any) -> None:
        s = self.settings
        start = time.time()
        x, y = self._read_probe_sample(dataset)
        self.decode_rate = len(x) / max(time.time() - start, 1e-3)  # samples/s, an upper bound of the cost
        self.probe_count = len(x)  # the cached training set holds at least these (validation inside)
        if self.select is not None:
            try:
                self.candidates = list(self.select(x, y)) or self.candidates
            except Exception as exc:  # noqa: BLE001 - selection is an optimisation; the candidates stand
                logger.exception("[select] selection failed (%s); keeping the default configuration", exc)
        self.multilabel = is_multilabel(y)
        tick = time.time()
        features = self.probe_extractor.extract(x)
        self.feature_rate = len(x) / max(time.time() - tick, 1e-3)
        train_idx, self.val_idx = (stratified_split(y, s.val_fraction, s.seed) if len(y) >= 4
                                   else (np.arange(len(y)), np.arange(len(y))))
        tick = time.time()
        self.probe = LinearProbe(self.multilabel, self.num_classes, s.seed).fit(features[train_idx], y[train_idx])
        self.probe_fit_rate = len(train_idx) / max(time.time() - tick, 1e-3)
        self.val_x, self.val_y, self.val_features = x[self.val_idx], y[self.val_idx], features[self.val_idx]
        self.probe_val = self._val_score(self.probe.predict(self.val_features))
        logger.info("[train] probe on %d samples in %.1f s (validation NAUC %.3f); configuration %s",
                    len(train_idx), time.time() - start, self.probe_val, self._name(self.config))

    def _reserve(self) -> float:
        return (self.test_seconds or 5.0) * 1.5 + self.settings.safety

    def _prepare(self, dataset: Any) -> None:
        """Decode the training set once (and refit the probe on it), then build the current network."""
        s = self.settings
        available = self.clock.left() - self._reserve()
        if available < 2 * s.first_slice:
            logger.info("[train] %.0f s left: not enough to fine-tune; done", self.clock.left())
            self.phase = Phase.DONE
            return
        if self.train_data is None:
            self._decode_training_set(dataset, available)
            self._refit_probe(available)
        c = self.config
        self.trainer = Trainer(c, num_classes=self.num_classes, in_channels=self.train_data.x.shape[-1],
                               weights_dir=self.weights_dir if c.weights else None, multilabel=self.multilabel,
                               seed=s.seed, max_divergences=s.max_divergences)
        self.trainer.set_train_data(self.train_data)
        self.net_val, self.stale_rounds, self.slice = -np.inf, 0, s.first_slice
        self.phase = Phase.FINE_TUNE

    def _decode_training_set(self, dataset: Any, available: float) -> None:
        """As much as `decode_share` of the time left allows now (at the probe sample's rate); the rest streamed."""
        s = self.settings
        affordable = max(int(self.decode_rate * s.decode_share * available), self.probe_count)
        max_samples = affordable if 0 < affordable < self.train_size else None
        if max_samples:
            logger.info("[train] decoding %d of %d training samples now (%.0f samples/s); streaming the rest",
                        max_samples, self.train_size, self.decode_rate)
        batch = self.config.batch_size if self.config else 32
        data = load_train_set(dataset, resolution=self.resolution, batch_size=batch, max_bytes=s.cache_bytes,
                              max_samples=max_samples, stream_rest=True, seed=s.seed)
        keep = np.setdiff1d(np.arange(len(data)), self.val_idx)  # the validation samples stay out
        self.train_data = TrainSet(data.x[keep], data.y[keep], stream=data.stream, seed=s.seed)

    def _refit_probe(self, available: float) -> None:
        """Refit the probe on more of the decoded training set (as many samples as `refit_share` of the
        time left affords, at most `refit_samples`): the probe answers until the network beats it, so
        a better probe lifts the early, heavily weighted part of the curve. Kept only if it validates
        at least as well as the first one."""
        s = self.settings
        x, y = self.train_data.x, self.train_data.y
        seconds_per_sample = 1.0 / self.feature_rate + 1.0 / self.probe_fit_rate
        n = min(len(x), s.refit_samples, int(s.refit_share * available / seconds_per_sample))
        if n < 2 * self.probe_count:  # too little gain for the time
            return
        start = time.time()
        idx = np.sort(self.rng.choice(len(x), size=n, replace=False))
        probe = LinearProbe(self.multilabel, self.num_classes, s.seed).fit(self.probe_extractor.extract(x[idx]), y[idx])
        score = self._val_score(probe.predict(self.val_features))
        logger.info("[train] probe refit on %d samples in %.1f s: validation NAUC %.3f (was %.3f)", n,
                    time.time() - start, score, self.probe_val)
        if score >= self.probe_val:
            self.probe, self.probe_val = probe, score

    def _fine_tune_round(self) -> None:
        s = self.settings
        available = self.clock.left() - self._reserve()
        if available < 1.0:
            self.phase = Phase.DONE
            return
        stats = self.trainer.train_for(min(self.slice, available))
        self.slice *= s.growth
        self.rounds += 1
        score = self._val_score(self.trainer.predict(self.val_x))
        if score > self.net_val + 1e-4:
            self.net_val, self.stale_rounds = score, 0
        else:
            self.stale_rounds += 1
        kept = self.kept_answer[0] if self.kept_answer is not None else -np.inf
        self.use_network = self.net_val >= max(self.probe_val, kept)
        logger.info("[train] round %d: %d steps in %.1f s, validation NAUC %.3f (probe %.3f)", self.rounds,
                    stats.steps, stats.seconds, score, self.probe_val)
        if self.stale_rounds >= s.patience or self.clock.left() - self._reserve() < 1.0:
            self.phase = Phase.DONE

    # -- faults ---------------------------------------------------------------------------------
    def _fault(self, exc: BaseException) -> None:
        """Log and record a failure, drop the failed configuration, and go on with what is left."""
        name = self._name(self.config)
        self.faults.append(Fault(self.phase.value, name, f"{type(exc).__name__}: {exc}"))
        logger.error("[fault] %s failed in phase %r (%s: %s); answering with the best valid predictor",
                     name, self.phase.value, type(exc).__name__, exc, exc_info=exc)
        if self.use_network and self.network_answer is not None:
            if self.kept_answer is None or self.net_val > self.kept_answer[0]:
                self.kept_answer = (self.net_val, self.network_answer)
        self.trainer, self.use_network, self.network_answer, self.net_val = None, False, None, -np.inf
        if self.candidates:
            self.candidates.pop(0)
        if self.candidates and self.clock.left() - self._reserve() >= 2 * self.settings.first_slice:
            logger.info("[fault] trying the next configuration: %s", self._name(self.config))
            self.phase = Phase.PREPARE
        else:
            self.phase = Phase.DONE

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _name(config: TrainConfig | None) -> str:
        return "none" if config is None else (config.name or config.backbone)

    def _read_probe_sample(self, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        """The first samples in dataset order; four times as many when fewer than half the classes appear
        (datasets stored sorted by class)."""
        size = (self.resolution,) * 2
        arrays = to_arrays(dataset, size=size, max_samples=self.settings.probe_samples)
        seen = int(((arrays.y > 0).sum(0) > 0).sum())
        if not arrays.complete and seen * 2 < self.num_classes:
            arrays = to_arrays(dataset, size=size, max_samples=4 * self.settings.probe_samples)
        return arrays.x, arrays.y

    def _val_score(self, prediction: np.ndarray) -> float:
        try:
            return nauc(self.val_y, prediction)
        except ScoringError:  # a validation set without both classes in any column says nothing
            return 0.0
