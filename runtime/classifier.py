"""The submission's classifier: a bundled portfolio wired to the anytime engine.

The constructor (outside the time budget) loads the bundle: manifest, fingerprint network, probe
network, store and fitted selector (a missing or damaged part is an error naming it), and checks
every configuration the bundle names: a configuration whose file does not parse or whose weights
file is missing or does not fit its backbone is logged and never selected. On the first `train`
call the engine asks `_rank`: the fingerprint of a batch of the first sample goes to the selector,
whose ranking of the known datasets orders the usable configurations (the default last); the
engine fine-tunes the first and falls back to the next only after a fault.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import numpy as np

import learner  # noqa: F401  (triton guard before torch)
from fingerprint.extractor import FeatureExtractor
from fingerprint.selectors import load_selector
from fingerprint.store import Store, meta_features_of
from learner.backbones import WeightsError, get_backbone, get_spec, weights_path
from learner.config import TrainConfig
from runtime.engine import AnytimeEngine, probe_storage
from runtime.manifest import FingerprintSpec, Manifest, ManifestError
from runtime.settings import RuntimeSettings, load_settings, member_key, member_settings, read_settings_file

__all__ = ["BUILTIN_DEFAULT", "AnytimeClassifier"]

logger = logging.getLogger(__name__)
BUILTIN_DEFAULT = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=64, batch_size=32,
                              learning_rate=1e-3, name="builtin-default")


class AnytimeClassifier:
    """Everything `Model` does, given the train metadata and a bundled portfolio folder."""

    def __init__(self, metadata: Any, bundle_dir: str, settings: RuntimeSettings | None = None):
        self.settings = s = settings or load_settings(bundle_dir)
        self.metadata = metadata
        self.num_classes = metadata.get_output_size()
        self.bundle_dir = bundle_dir
        self.weights_dir = os.path.join(bundle_dir, "weights")
        self.match: list[tuple[str, float]] = []
        self.unusable: dict[str, str] = {}  # configuration file -> why it cannot run
        self.configs: dict[str, TrainConfig] = {}  # configuration file -> record (usable ones)
        self.member_settings: dict[TrainConfig, dict[str, Any]] = {}  # a member's own run-time settings
        self.same_as: dict[str, str] = {}  # configuration file -> the file of the identical member kept
        try:
            self.manifest: Manifest | None = Manifest.load(bundle_dir)
            self.extractor = self._extractor(self.manifest.fingerprint)
            self.probe_extractor = (self._extractor(self.manifest.probe) if self.manifest.probe
                                    else self.extractor)
            # built by the engine when first used (the manifest has checked that their files exist)
            self.companions = ([(spec.backbone, functools.partial(self._extractor, spec))
                                for spec in self.manifest.companions] if s.probe_companions != "off" else [])
            self.store = Store.load(os.path.join(bundle_dir, self.manifest.store), expect=self.extractor.info)
            self.selector = load_selector(os.path.join(bundle_dir, self.manifest.selector))
        except (ManifestError, ValueError, OSError) as exc:
            if s.config != "default":
                raise
            logger.warning("[init] bundled portfolio unusable (%s); using the built-in default as asked", exc)
            self.manifest, self.selector = None, None
            self.extractor = self.probe_extractor = self._extractor(FingerprintSpec("resnet18", None, 64))
            self.companions = []
        if s.probe_features == "stages":
            for network in dict.fromkeys([self.probe_extractor.info.backbone, *(name for name, _ in self.companions)]):
                if not get_spec(network).stages:
                    raise ValueError(f"probe_features 'stages': the probe network {network!r} declares no stages "
                                     "(BackboneSpec.stages); set probe_features to 'head'")
        if self.manifest is not None:
            self._check_configs()
        candidates = self._forced() if s.config else self._default_candidates()
        probe_side = probe_storage(s, self.probe_extractor.resolution, metadata.get_matrix_size(),
                                   metadata.get_sequence_size())
        resolutions = [self.extractor.resolution, self.probe_extractor.resolution, probe_side,
                       *(c.resolution for c in (candidates if s.config else self.configs.values()))]
        # frames per clip sampled by readers the engine does not hold yet (selection may pick any configuration)
        frames = [self.extractor.frames, *(spec.frames for spec in (self.manifest.companions if self.manifest else ())),
                  *(c.frames_per_clip for c in (candidates if s.config else self.configs.values()))]
        self.engine = AnytimeEngine(num_classes=self.num_classes, train_size=metadata.size(),
                                    probe_extractor=self.probe_extractor, companions=self.companions,
                                    candidates=candidates,
                                    select=None if s.config or self.selector is None else self._rank,
                                    weights_dir=self.weights_dir, storage_resolution=max(resolutions),
                                    native_size=tuple(metadata.get_matrix_size()), settings=s,
                                    reader_frames=max(frames), member_settings=self.member_settings)

    # -- the platform calls ---------------------------------------------------------------------
    @property
    def done_training(self) -> bool:
        return self.engine.done_training

    @property
    def config(self) -> TrainConfig | None:
        return self.engine.config

    def train(self, dataset: Any, remaining_time_budget: float | None = None) -> None:
        self.engine.train(dataset, remaining_time_budget=remaining_time_budget)

    def test(self, dataset: Any, remaining_time_budget: float | None = None) -> np.ndarray:
        return self.engine.test(dataset, remaining_time_budget=remaining_time_budget)

    # -- bundle ---------------------------------------------------------------------------------
    def _extractor(self, spec: FingerprintSpec) -> FeatureExtractor:
        weights = os.path.join(self.weights_dir, spec.weights) if spec.weights else None
        return FeatureExtractor(spec.backbone, weights, resolution=spec.resolution, frames=spec.frames, seed=spec.seed,
                                batch_activations=self.settings.forward_activations)

    def _check_configs(self) -> None:
        """Load every configuration and build each (backbone, weights) pair once: what cannot run is
        found here, outside the budget, and never selected."""
        fits: dict[tuple[str, str], str | None] = {}
        for relative in sorted({self.manifest.default, *self.manifest.configs.values()}):
            self._check_config(relative, fits)
        for relative, why in self.unusable.items():
            logger.error("[init] configuration %s cannot run and will not be selected: %s", relative, why)
        self._merge_duplicates()

    def _check_config(self, relative: str, fits: dict[tuple[str, str], str | None]) -> None:
        """Load one configuration file (with its member settings) into `configs`, or say in `unusable` why
        it cannot run; `fits` caches whether a (backbone, weights) pair builds."""
        try:
            config = TrainConfig.load(os.path.join(self.bundle_dir, relative))
        except ValueError as exc:
            self.unusable[relative] = str(exc)
            return
        if config.weights is not None:
            key = (config.backbone, config.weights)
            if key not in fits:
                try:
                    get_backbone(config.backbone, num_classes=2, weights_file=weights_path(self.weights_dir, *key))
                    fits[key] = None
                except (WeightsError, ValueError, RuntimeError) as exc:
                    fits[key] = str(exc)
            if fits[key] is not None:
                self.unusable[relative] = fits[key]
                return
        if relative in self.manifest.settings:
            path = os.path.join(self.bundle_dir, self.manifest.settings[relative])
            try:
                overrides = read_settings_file(path)
                member_settings(self.settings, overrides, path)  # validated now, applied once chosen
            except ValueError as exc:
                self.unusable[relative] = str(exc)
                return
            self.member_settings[config] = overrides
        self.configs[relative] = config

    def _merge_duplicates(self) -> None:
        """Members that run the same thing (the same configuration apart from its name, the same member
        settings) are one member: after a stall the time left must go to another configuration, not to
        the one that has just stalled under another name. The default (else the first file) is kept."""
        first_of: dict[str, str] = {}  # what a member runs -> the file kept for it
        for relative in dict.fromkeys([self.manifest.default, *sorted(self.configs)]):
            config = self.configs.get(relative)
            if config is None:
                continue
            first = first_of.setdefault(member_key(config, self.member_settings.get(config)), relative)
            if first != relative:
                self.same_as[relative] = first
                logger.info("[init] configuration %s runs the same as %s: one member", relative, first)

    def _member_file(self, dataset: str) -> str | None:
        """The configuration file a known dataset maps to, identical members merged."""
        relative = self.manifest.configs.get(dataset)
        return self.same_as.get(relative, relative)

    def _usable(self, relative: str) -> bool:
        return relative in self.configs and relative not in self.manifest.unsafe

    def _default_candidates(self) -> list[TrainConfig]:
        """The default configuration, else any usable one; none at all leaves the probe alone."""
        if self.manifest is None:
            return [BUILTIN_DEFAULT]
        order = [self.manifest.default, *sorted(self.configs)]
        for relative in order:
            if self._usable(relative):
                return [self.configs[relative]]
        logger.error("[init] no configuration of the bundle can run: the linear models answer alone")
        return []

    def _forced(self) -> list[TrainConfig]:
        name = self.settings.config
        if self.manifest is None:
            return [BUILTIN_DEFAULT]
        relative = self.manifest.default if name == "default" else f"configs/{name}.json"
        path = os.path.join(self.bundle_dir, relative)
        if not os.path.isfile(path):
            raise ValueError(f"forced configuration {name!r}: {path} not found")
        if relative not in self.configs and relative not in self.unusable:  # a file no known dataset maps to
            self._check_config(relative, {})
        if relative in self.unusable:
            raise ValueError(f"forced configuration {name!r} cannot run: {self.unusable[relative]}")
        return [self.configs[relative]]

    # -- selection ------------------------------------------------------------------------------
    def _rank(self, x: np.ndarray, y: np.ndarray) -> list[TrainConfig]:
        """Fingerprint a random batch of the first sample; the usable configurations in the order of
        the known datasets' ranking, the default last. The batch is drawn by a generator of its own (the
        seed's), so that the choice depends on the data alone, not on how much randomness earlier work drew."""
        rng = np.random.default_rng(self.settings.seed)
        batch = self.extractor.extract(
            x[np.sort(rng.choice(len(x), size=min(self.settings.fingerprint_batch, len(x)), replace=False))])
        if len(batch) < self.selector.min_batch:
            logger.warning("[select] %d samples are too few for the selector: default configuration", len(batch))
            return self._default_candidates()
        row, col = self.metadata.get_matrix_size()
        size = (row, col) if row > 0 and col > 0 else (x.shape[2], x.shape[3])
        self.match = self.selector.rank(batch, meta_features_of(self.metadata, y, size))
        order: list[str] = []
        for dataset, score in self.match:
            relative = self._member_file(dataset)
            if relative and self._usable(relative) and relative not in order:
                if not order:
                    logger.info("[select] most similar known dataset: %s (score %.2f); configuration %s",
                                dataset, score, relative)
                order.append(relative)
        if self._usable(self.manifest.default) and self.manifest.default not in order:
            order.append(self.manifest.default)
        if len(order) == 1 and not any(self._member_file(d) == order[0] for d, _ in self.match):
            logger.warning("[select] no usable configuration among the matches: default configuration")
        return [self.configs[r] for r in order] or self._default_candidates()
