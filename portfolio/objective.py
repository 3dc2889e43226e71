"""What a configuration is worth on a dataset: the ALC of an anytime run on held-out data.

The learner trains on part of the dataset's train split in growing time slices and predicts the
held-out part after each; NAUC of each prediction, timestamped from the start (decoding
included), gives the ALC with T = budget and t0 = budget / 20 (the platform's curve shape). The
test split is never used. Objectives have the signature `fn(config, budget, context) -> result`
and are named `module:function`, so BOHB workers and matrix jobs on other machines import them.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Evaluation", "evaluate_config", "alc_objective", "selector_objective", "load_objective"]


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


def evaluate_config(config: Any, dataset_dir: str, budget: float, *, weights_dir: str | None = None,
                    seed: int = 0, val_fraction: float = 0.25, first_slice: float | None = None,
                    growth: float = 1.5, max_samples: int | None = None) -> Evaluation:
    """Anytime run of `config` (a TrainConfig) on `dataset_dir`'s train split for `budget` seconds."""
    from learner.data import TrainSet, load_train_set, stratified_split
    from learner.trainer import Trainer
    from metadata.check import find_dataset
    from metadata.reader import AutoDLDataset
    from scoring.metrics import alc, nauc

    start = time.perf_counter()
    _, data_dir = find_dataset(dataset_dir)
    split = AutoDLDataset(os.path.join(data_dir, "train"))
    data = load_train_set(split, resolution=config.resolution, batch_size=config.batch_size,
                          max_samples=max_samples, seed=seed)
    train, val = stratified_split(data.y, val_fraction, seed)
    trainer = Trainer(config, num_classes=data.y.shape[1], in_channels=data.x.shape[-1], weights_dir=weights_dir,
                      seed=seed)
    trainer.set_train_data(TrainSet(data.x[train], data.y[train], seed=seed))
    y_val = data.y[val]
    timestamps, scores = [], []
    slice_seconds = first_slice if first_slice is not None else max(0.5, budget / 40)
    while True:
        left = budget - (time.perf_counter() - start)
        if left <= 0:
            break
        trainer.train_for(min(slice_seconds, left * 0.8))
        prediction = trainer.predict(data.x[val])
        elapsed = time.perf_counter() - start
        if elapsed > budget:
            break
        timestamps.append(elapsed)
        scores.append(nauc(y_val, prediction))
        slice_seconds *= growth
    score = alc(timestamps, scores, time_budget=budget, t0=budget / 20)
    return Evaluation(alc=score, final_nauc=scores[-1] if scores else float("nan"),
                      first_prediction=timestamps[0] if timestamps else None, timestamps=timestamps,
                      scores=scores, steps=trainer.total_steps)


def alc_objective(config: dict[str, Any], budget: float, context: dict[str, Any]) -> dict[str, Any]:
    """The default objective: `evaluate_config` of the mapped configuration; loss = 1 - ALC."""
    from portfolio.space import to_train_config

    evaluation = evaluate_config(to_train_config(config), context["dataset"], budget,
                                 weights_dir=context.get("weights_dir"), seed=int(context.get("seed", 0)),
                                 max_samples=context.get("max_samples"))
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

