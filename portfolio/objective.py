"""What a configuration is worth on a dataset: the ALC of the run-time engine on held-out data.

A known dataset's train split is cut (stratified, seeded) into a training part and a held-out
part; the held-out part plays the test split (its labels hidden from the engine). The run-time
flow's own engine (`runtime.engine.AnytimeEngine`: pixel model and probe first, then fine-tuning rounds) is driven
by the platform's loop (train, test, timestamp) for `budget` seconds, and the NAUC of each answer
gives the ALC with T = budget and t0 = budget / 20 (the platform's curve shape). The dataset's test
split is never used. Objectives have the signature `fn(config, budget, context) -> result` and are
named `module:function`, so BOHB workers and matrix jobs on other machines import them.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Evaluation", "ConfigurationFailed", "HeldOut", "held_out_split", "evaluate_config", "split_settings",
           "alc_objective", "parse_probe", "run_context",
           "selector_objective", "load_objective"]


class ConfigurationFailed(RuntimeError):
    """The engine recorded a fault for the configuration: a crash, never a score."""


@dataclass
class Evaluation:
    alc: float
    final_nauc: float
    first_prediction: float | None
    timestamps: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HeldOut:
    """A known dataset's train split as the platform would present it: two `tf.data` datasets."""

    train: Any            # (example, labels) of the training part
    test: Any             # (example, zero labels) of the held-out part
    test_labels: np.ndarray
    train_size: int
    num_classes: int
    matrix_size: tuple[int, int] = (-1, -1)  # the dataset's (rows, columns); -1: sizes vary
    sequence_size: int = 1


def held_out_split(dataset_dir: str, fraction: float = 0.25, seed: int = 0,
                   max_samples: int | None = None) -> HeldOut:
    """Cut the train split of `dataset_dir` into a training part and a held-out part (stratified).

    `max_samples` keeps a stratified subset of the train split first (a lower fidelity).
    """
    import tensorflow as tf

    from learner.data import stratified_split
    from metadata.check import find_dataset
    from metadata.reader import AutoDLDataset

    _, data_dir = find_dataset(dataset_dir)
    split = AutoDLDataset(os.path.join(data_dir, "train"))
    labels = split.labels()
    pool = np.arange(len(labels))
    if max_samples is not None and max_samples < len(pool):
        _, pool = stratified_split(labels, max_samples / len(pool), seed)
    train_rel, val_rel = stratified_split(labels[pool], fraction, seed)
    train_idx, val_idx = pool[train_rel], pool[val_rel]

    def subset(indices: np.ndarray, hide_labels: bool) -> tf.data.Dataset:
        mask = np.zeros(len(labels), bool)
        mask[indices] = True
        mask_t = tf.constant(mask)
        ds = split.get_dataset().enumerate().filter(lambda i, sample: tf.gather(mask_t, i))
        if hide_labels:
            return ds.map(lambda i, sample: (sample[0], tf.zeros_like(sample[1])))
        return ds.map(lambda i, sample: (sample[0], sample[1]))

    metadata = split.get_metadata()
    return HeldOut(train=subset(train_idx, False), test=subset(val_idx, True), test_labels=labels[val_idx],
                   train_size=len(train_idx), num_classes=labels.shape[1], matrix_size=metadata.get_matrix_size(),
                   sequence_size=metadata.get_sequence_size())


def evaluate_config(config: Any, dataset_dir: str, budget: float, *, weights_dir: str | None = None,
                    probe: dict[str, Any] | None = None, seed: int = 0, val_fraction: float = 0.25,
                    max_samples: int | None = None, settings: Any = None,
                    member: dict[str, Any] | None = None, horizon: float | None = None) -> Evaluation:
    """The run-time engine with `config` (a TrainConfig) on a held-out split of `dataset_dir` for `budget` s.

    With `horizon` (> budget), the run is the first `budget` seconds of a run of `horizon` seconds: the engine
    is told the time left until the horizon, and the ALC (T = horizon, t0 = horizon / 20) holds the last
    answer until the horizon. A shorter prefix of the same run is a lower fidelity of the same score, which a
    shorter run (its own schedule, its own t0) is not.

    Args:
        probe: the probe's frozen network, `{"backbone", "weights" (a file or None), "resolution"}`; by
            default the configuration's own backbone and weights at its resolution.
        settings: `runtime.settings.RuntimeSettings` of the engine (its defaults otherwise; the seed is set).
        member: the configuration's own settings (`runtime.settings.MEMBER_FIELDS`), applied once it is
            chosen, as the Model applies a bundle member's settings file.

    Raises:
        WeightsError: the configuration's weights are missing or do not fit (checked before the clock).
        ConfigurationFailed: the engine recorded a fault for the configuration.
    """
    from dataclasses import replace

    from fingerprint.extractor import FeatureExtractor
    from learner.backbones import get_backbone, weights_path
    from runtime.engine import AnytimeEngine, probe_storage
    from runtime.settings import RuntimeSettings
    from scoring.metrics import alc, nauc

    config_weights = None
    if config.weights is not None:
        if weights_dir is None:
            raise ValueError(f"configuration {config.name or config.backbone!r} needs weights {config.weights!r}: "
                             "pass weights_dir")
        config_weights = weights_path(weights_dir, config.backbone, config.weights)
        get_backbone(config.backbone, num_classes=2, weights_file=config_weights)  # as the Model's constructor does
    probe = probe or {"backbone": config.backbone, "weights": config_weights, "resolution": config.resolution}
    settings = replace(settings or RuntimeSettings(), seed=seed)
    extractor = FeatureExtractor(probe["backbone"], probe.get("weights"), resolution=int(probe["resolution"]),
                                 frames=config.frames_per_clip, seed=seed,
                                 batch_activations=settings.forward_activations)
    data = held_out_split(dataset_dir, val_fraction, seed, max_samples)
    side = probe_storage(settings, extractor.resolution, data.matrix_size, data.sequence_size)  # as the Model does
    engine = AnytimeEngine(num_classes=data.num_classes, train_size=data.train_size, probe_extractor=extractor,
                           candidates=[config], weights_dir=weights_dir,
                           storage_resolution=max(config.resolution, extractor.resolution, side),
                           native_size=tuple(data.matrix_size), settings=settings,
                           member_settings={config: member} if member else None)
    if horizon is not None and horizon < budget:
        raise ValueError(f"horizon {horizon:g} s is shorter than the budget {budget:g} s")
    total = horizon or budget
    timestamps, scores = [], []
    start = time.time()
    while not engine.done_training:  # the platform's loop
        engine.train(data.train, remaining_time_budget=start + total - time.time())
        prediction = engine.test(data.test, remaining_time_budget=start + total - time.time())
        elapsed = time.time() - start
        if elapsed > budget:  # the platform (or the end of the prefix) stops the run before this answer
            break
        timestamps.append(elapsed)
        scores.append(nauc(data.test_labels, prediction))
        if start + budget - time.time() <= 0:
            break
    if engine.faults:
        raise ConfigurationFailed("; ".join(f"{f.phase}: {f.error}" for f in engine.faults))
    score = alc(timestamps, scores, time_budget=total, t0=total / 20)
    return Evaluation(alc=score, final_nauc=scores[-1] if scores else float("nan"),
                      first_prediction=timestamps[0] if timestamps else None, timestamps=timestamps,
                      scores=scores, steps=engine.trainer.total_steps if engine.trainer else 0)


def split_settings(config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(global settings, member settings) of a configuration: its run-time knobs (a pipeline space) and its
    `settings` entry (a member's settings file, as the matrix passes it). What a member may set is applied
    once it is chosen, as in the Model; the rest (knobs of the first answers) is global."""
    from dataclasses import replace

    from portfolio.space import non_default, to_runtime_settings
    from runtime.settings import MEMBER_FIELDS, RuntimeSettings, member_settings

    changed = non_default(to_runtime_settings(config))
    member = {k: v for k, v in changed.items() if k in MEMBER_FIELDS}
    member.update(config.get("settings") or {})
    where = f"configuration {config.get('name') or config.get('model')!r}"
    member_settings(RuntimeSettings(), member, where)  # checked before the clock
    return replace(RuntimeSettings(), **{k: v for k, v in changed.items() if k not in MEMBER_FIELDS}), member


def alc_objective(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """The default objective: `evaluate_config` of the mapped configuration (and its run-time settings, split
    as the Model applies them: `split_settings`); loss = 1 - ALC. `context["horizon"]`: every budget is a
    prefix of one run of that many seconds (BOHB's fidelities are then prefixes of the same curve)."""
    from portfolio.space import to_train_config

    settings, member = split_settings(config)
    evaluation = evaluate_config(to_train_config(config), context["dataset"], budget,
                                 weights_dir=context.get("weights_dir"), probe=context.get("probe"),
                                 seed=int(context.get("seed", 0)), max_samples=context.get("max_samples"),
                                 settings=settings, member=member, horizon=context.get("horizon"))
    return {"loss": 1.0 - evaluation.alc, "info": evaluation.to_dict()}


def selector_objective(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """Loss = 1 - identification accuracy at batch 64 on held-out store vectors.

    The budget is the number of random held-out batches per dataset (a cheaper, noisier estimate at
    low budget).
    """
    from fingerprint.evaluate import identification_curve
    from fingerprint.selectors import get_selector
    from fingerprint.store import Store
    from portfolio.space import to_selector_params

    params = to_selector_params(config)
    store = Store.load(context["store"])
    selector = get_selector(context["selector"], **params)
    row = identification_curve(selector, store, (64,), repeats=max(1, int(budget)), seed=int(context.get("seed", 0)))[0]
    return {"loss": 1.0 - row.accuracy, "info": {"accuracy": row.accuracy, "ms_per_selection": row.ms_per_selection,
                                                 "params": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in params.items()}}}


def parse_probe(spec: str, weights_dir: str | None) -> dict[str, Any]:
    """`backbone[:weights file]@resolution` (the file in `weights_dir`): the probe the Model's bundle uses, so
    that tuning and the matrix run the probe that runs at test time."""
    from learner.backbones import list_backbones

    head, sep, side = spec.rpartition("@")
    backbone, _, weights = head.partition(":")
    if not sep or not side.isdigit() or backbone not in list_backbones():
        raise ValueError(f"--probe must be BACKBONE[:WEIGHTS_FILE]@RESOLUTION with a registered backbone, got {spec!r}")
    path = None
    if weights:
        path = os.path.join(weights_dir or "", weights)
        if not os.path.isfile(path):
            raise ValueError(f"--probe {spec!r}: no weights file {path}")
    return {"backbone": backbone, "weights": path and os.path.abspath(path), "resolution": int(side)}


def run_context(*, max_samples: int | None = None, probe: str | None = None, weights_dir: str | None = None,
                horizon: float | None = None) -> dict[str, Any]:
    """The objective's context from the CLIs' shared options (`--max-samples`, `--probe`, `--horizon`)."""
    context: dict[str, Any] = {"max_samples": max_samples} if max_samples else {}
    if probe:
        context["probe"] = parse_probe(probe, weights_dir)
    if horizon:
        context["horizon"] = horizon
    return context


def load_objective(spec: str) -> Callable[[dict[str, Any], float, dict[str, Any]], dict[str, Any]]:
    """Import `module:function` (no eval)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"objective must be 'module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import objective {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"objective {spec!r} is not callable")
    return fn

