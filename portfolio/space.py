"""The configuration search space (ConfigSpace) and its one mapping to `TrainConfig`.

As in the paper: optimizer {Adam, SGD}, batch size {16, 32, 64, 128}, learning rate 1e-5..0.5
(log), dropout 0.01..0.99; plus the model (backbone and weights source, one categorical over the
weights files that exist) and the input resolution; for video, frames per clip and frame sampling.
With `pipeline=True` the space also holds the run-time engine's knobs that a portfolio member can
carry (`RuntimeKnob.member`: the probe's later rungs, the answer decisions and the fine-tuning
schedule), so that a sampled configuration is a whole anytime pipeline as the Model runs it:
`to_runtime_settings` maps it to `RuntimeSettings`. The knobs of the first answers (cross-validation,
the pixel model) act before any member is chosen; they stay registered for tuning the bundle's global
settings (`pipeline="all"`) but are not a member's choice.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ConfigSpace as CS

from learner.backbones import get_spec, list_backbones
from learner.config import FRAME_SAMPLING, TrainConfig
from runtime.settings import RuntimeSettings

__all__ = ["RANDOM_WEIGHTS", "RUNTIME_KNOBS", "RuntimeKnob", "register_runtime_knob", "available_models",
           "build_space", "to_train_config", "from_train_config", "to_runtime_settings", "non_default", "selector_space",
           "to_selector_params"]

RANDOM_WEIGHTS = "random"
RUNTIME_PREFIX = "rt:"  # hyperparameter names of the run-time knobs


@dataclass(frozen=True)
class RuntimeKnob:
    """A run-time choice of the pipeline space: its categorical choices (strings, as ConfigSpace and BOHB
    handle them best), the default (today's behaviour), and how a choice sets `RuntimeSettings` fields."""

    name: str
    choices: tuple[str, ...]
    default: str
    to_settings: Callable[[str], dict[str, Any]]

    @property
    def member(self) -> bool:
        """Whether a portfolio member may set it (every field it sets is read after selection)."""
        from runtime.settings import MEMBER_FIELDS

        return set(self.to_settings(self.default)) <= MEMBER_FIELDS


RUNTIME_KNOBS: dict[str, RuntimeKnob] = {}


def register_runtime_knob(knob: RuntimeKnob) -> RuntimeKnob:
    if knob.name in RUNTIME_KNOBS:
        raise ValueError(f"run-time knob {knob.name!r} is already registered")
    if knob.default not in knob.choices:
        raise ValueError(f"run-time knob {knob.name!r}: default {knob.default!r} is not a choice")
    for choice in knob.choices:
        RuntimeSettings(**knob.to_settings(choice))  # every choice must give valid settings
    RUNTIME_KNOBS[knob.name] = knob
    return knob


def _flag(field_name: str) -> Callable[[str], dict[str, Any]]:
    return lambda choice: {field_name: choice == "on"}


_RUNGS = (64, 128, 224)
for _knob in (
    RuntimeKnob("probe_top", tuple(str(r) for r in _RUNGS), "224",
                lambda c: {"probe_resolutions": tuple(r for r in _RUNGS if r <= int(c))}),
    RuntimeKnob("probe_flip", ("on", "off"), "on", _flag("probe_flip")),
    RuntimeKnob("probe_climb", ("best", "step"), "step", lambda c: {"probe_climb": c}),
    RuntimeKnob("probe_late_share", ("0", "0.1", "0.25"), "0.25", lambda c: {"probe_late_share": float(c)}),
    RuntimeKnob("probe_companions", ("off", "top", "any"), "top", lambda c: {"probe_companions": c}),
    RuntimeKnob("probe_features", ("head", "stages"), "stages", lambda c: {"probe_features": c}),
    RuntimeKnob("cv_folds", ("0", "3", "5"), "5", lambda c: {"cv_folds": int(c)}),
    RuntimeKnob("pixel_first", ("on", "off"), "on", _flag("pixel_first")),
    RuntimeKnob("linear_tol", ("0.0001", "0.001", "0.01"), "0.01", lambda c: {"linear_tol": float(c)}),
    RuntimeKnob("probe_C", ("0.003", "0.01", "0.03", "0.5"), "0.01", lambda c: {"probe_C": float(c)}),
    RuntimeKnob("pixel_C", ("0.01", "0.03", "0.1", "1"), "0.01", lambda c: {"pixel_C": float(c)}),
    RuntimeKnob("pixel_max_iter", ("10", "50", "300"), "50", lambda c: {"pixel_max_iter": int(c)}),
    RuntimeKnob("switch_confidence", ("0", "0.7", "0.8", "0.9"), "0.8", lambda c: {"switch_confidence": float(c)}),
    RuntimeKnob("min_val_switch", ("0", "30", "50"), "30", lambda c: {"min_val_switch": int(c)}),
    RuntimeKnob("blend", ("on", "off"), "on", _flag("blend")),
    RuntimeKnob("patience", ("2", "4", "6"), "4", lambda c: {"patience": int(c)}),
    RuntimeKnob("growth", ("1.3", "1.6", "2.0"), "1.6", lambda c: {"growth": float(c)}),
    RuntimeKnob("first_slice", ("3", "5", "10"), "5", lambda c: {"first_slice": float(c)}),
    RuntimeKnob("next_config_on_stall", ("on", "off"), "on", _flag("next_config_on_stall")),
    RuntimeKnob("video_frames", ("0", "8", "16", "32"), "16", lambda c: {"video_frames": int(c)}),
    RuntimeKnob("first_sample_seconds", ("0", "1.5", "3", "6"), "3", lambda c: {"first_sample_seconds": float(c)}),
):
    register_runtime_knob(_knob)


def available_models(weights_dir: str | None, backbones: Sequence[str] | None = None,
                     allow_random: bool = False) -> list[str]:
    """`backbone:weights` choices: every `<backbone>-<id>.pt` in `weights_dir` (and random init)."""
    wanted = set(backbones or list_backbones())
    models = []
    if weights_dir:
        for path in sorted(glob.glob(os.path.join(weights_dir, "*.pt"))):
            stem = os.path.basename(path)[:-3]
            for name in wanted:
                if stem.startswith(name + "-"):
                    models.append(f"{name}:{stem[len(name) + 1:]}")
    if allow_random:
        models += [f"{name}:{RANDOM_WEIGHTS}" for name in sorted(wanted)]
    if not models:
        raise ValueError(f"no model to tune: no weights files for {sorted(wanted)} in {weights_dir!r} "
                         "(and random initialisation not allowed)")
    return sorted(set(models))


def build_space(models: Sequence[str], *, resolutions: Sequence[int] = (64, 96, 128), video: bool = False,
                pipeline: bool | str = False, seed: int = 0) -> CS.ConfigurationSpace:
    """The search space over `models` (`backbone:weights` strings); with `pipeline`, the run-time knobs a
    member can carry too (`pipeline="all"`: every registered knob, for the bundle's global settings)."""
    if pipeline not in (False, True, "all"):
        raise ValueError(f"pipeline must be False, True or 'all', got {pipeline!r}")
    too_large = [m for m in models if get_spec(m.split(":")[0]).min_size > max(resolutions)]
    if too_large:
        raise ValueError(f"{', '.join(too_large)}: need a resolution of at least "
                         f"{min(get_spec(m.split(':')[0]).min_size for m in too_large)}; resolutions are {list(resolutions)}")
    cs = CS.ConfigurationSpace(seed=seed)
    model = CS.CategoricalHyperparameter("model", list(models))
    # Categoricals, not ordinals: hpbandster's BOHB model cannot handle ordinal hyperparameters. The
    # default is the largest resolution, which every model accepts.
    resolution = CS.CategoricalHyperparameter("resolution", sorted(resolutions), default_value=max(resolutions))
    cs.add([
        model,
        CS.CategoricalHyperparameter("optimizer", ["adam", "sgd"]),
        CS.CategoricalHyperparameter("batch_size", [16, 32, 64, 128]),
        CS.UniformFloatHyperparameter("learning_rate", 1e-5, 0.5, log=True),
        CS.UniformFloatHyperparameter("dropout", 0.01, 0.99),
        resolution,
    ])
    if video:
        cs.add([CS.CategoricalHyperparameter("frames_per_clip", [2, 4, 8]),
                CS.CategoricalHyperparameter("frame_sampling", list(FRAME_SAMPLING))])
    if pipeline:
        cs.add([CS.CategoricalHyperparameter(RUNTIME_PREFIX + k.name, list(k.choices), default_value=k.default)
                for k in RUNTIME_KNOBS.values() if pipeline == "all" or k.member])
    for m in models:  # a backbone's minimum input size forbids smaller resolutions
        small = [r for r in resolutions if r < get_spec(m.split(":")[0]).min_size]
        for r in small:
            cs.add(CS.ForbiddenAndConjunction(CS.ForbiddenEqualsClause(model, m),
                                              CS.ForbiddenEqualsClause(resolution, r)))
    return cs


def to_train_config(values: dict[str, Any] | CS.Configuration, name: str = "") -> TrainConfig:
    """The one mapping from a sampled configuration to the learner's record."""
    values = dict(values)
    backbone, _, weights = str(values["model"]).partition(":")
    return TrainConfig(backbone=backbone, weights=None if weights == RANDOM_WEIGHTS else weights,
                       optimizer=str(values["optimizer"]), learning_rate=float(values["learning_rate"]),
                       batch_size=int(values["batch_size"]), dropout=float(values["dropout"]),
                       resolution=int(values["resolution"]), frames_per_clip=int(values.get("frames_per_clip", 4)),
                       frame_sampling=str(values.get("frame_sampling", "uniform")), name=name)


def to_runtime_settings(values: dict[str, Any] | CS.Configuration, base: RuntimeSettings | None = None
                        ) -> RuntimeSettings:
    """The run-time knobs of a sampled pipeline configuration applied to `base` (defaults otherwise); a
    configuration without them gives `base` unchanged."""
    from dataclasses import replace

    fields: dict[str, Any] = {}
    for key, value in dict(values).items():
        if key.startswith(RUNTIME_PREFIX):
            name = key[len(RUNTIME_PREFIX):]
            if name not in RUNTIME_KNOBS:
                raise ValueError(f"unknown run-time knob {name!r}; registered: {', '.join(sorted(RUNTIME_KNOBS))}")
            fields.update(RUNTIME_KNOBS[name].to_settings(str(value)))
    return replace(base or RuntimeSettings(), **fields)


def non_default(settings: RuntimeSettings) -> dict[str, Any]:
    """The fields of `settings` that differ from the defaults (what a settings file needs to hold)."""
    from dataclasses import fields

    return {f.name: getattr(settings, f.name) for f in fields(settings) if getattr(settings, f.name) != f.default}


def from_train_config(config: TrainConfig) -> dict[str, Any]:
    """The inverse of `to_train_config`: a record as search-space values (objectives take these)."""
    weights = config.weights if config.weights is not None else RANDOM_WEIGHTS
    return {"model": f"{config.backbone}:{weights}", "optimizer": config.optimizer,
            "learning_rate": config.learning_rate, "batch_size": config.batch_size, "dropout": config.dropout,
            "resolution": config.resolution, "frames_per_clip": config.frames_per_clip,
            "frame_sampling": config.frame_sampling}


def selector_space(name: str, seed: int = 0) -> CS.ConfigurationSpace:
    """Hyperparameters of a fingerprint selector, as the fingerprint issue lists them."""
    cs = CS.ConfigurationSpace(seed=seed)
    if name == "kmeans_vote":
        cs.add([CS.UniformIntegerHyperparameter("n_clusters", 5, 40),
                CS.UniformIntegerHyperparameter("n_init", 10, 30),
                CS.UniformIntegerHyperparameter("max_iter", 100, 500)])
    elif name in ("mlp_vote", "mlp_moments"):
        cs.add([CS.UniformIntegerHyperparameter("hidden", 32, 512, log=True),
                CS.UniformFloatHyperparameter("dropout", 0.0, 0.7),
                CS.UniformFloatHyperparameter("lr", 1e-4, 1e-2, log=True),
                CS.UniformIntegerHyperparameter("epochs", 5, 60)])
        if name == "mlp_moments":
            cs.add(CS.UniformFloatHyperparameter("p", 0.0, 0.4))
            # each statistic switchable; quantiles stay on so the vector is never empty
            cs.add([CS.CategoricalHyperparameter(f"use_{s}", [True, False])
                    for s in ("mean", "median", "std", "var", "skew", "kurtosis")])
    elif name == "metafeatures_knn":
        cs.add(CS.UniformIntegerHyperparameter("n_neighbors", 1, 5))
    else:
        raise ValueError(f"no search space for selector {name!r}")
    return cs


def to_selector_params(values: dict[str, Any] | CS.Configuration) -> dict[str, Any]:
    """A sampled selector configuration as keyword arguments of the selector."""
    values = dict(values)
    params: dict[str, Any] = {}
    statistics = []
    for key, value in values.items():
        if key.startswith("use_"):
            if bool(value):
                statistics.append(key[4:])
        else:
            params[key] = value.item() if hasattr(value, "item") else value
    if any(k.startswith("use_") for k in values):
        params["statistics"] = tuple(statistics) + ("quantiles",)
    return params
