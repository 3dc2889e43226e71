"""The configuration record: every knob a training run reads, as typed, frozen, validated data."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "OPTIMIZERS", "FRAME_SAMPLING"]

OPTIMIZERS = ("adam", "sgd")
FRAME_SAMPLING = ("uniform", "segments", "middle")


@dataclass(frozen=True)
class TrainConfig:
    """One configuration of the transfer learner (a portfolio member).

    Attributes:
        backbone: registry name (`learner.backbones.list_backbones()`).
        weights: weights id resolved in the weights folder (`<backbone>-<id>.pt`), or None to
            train from random initialisation.
        optimizer: "adam", or "sgd" (Nesterov momentum 0.9).
        learning_rate, batch_size, dropout: as named.
        weight_decay: L2 penalty of the optimizer (the paper: 1e-6).
        resolution: input side in pixels (square).
        frames_per_clip: frames sampled from each video clip.
        frame_sampling: "uniform", "segments" (random frame within equal segments) or "middle".
        name: a label for logs and portfolios.
    """

    backbone: str = "mobilenet_v3_small"
    weights: str | None = "imagenet"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    dropout: float = 0.2
    weight_decay: float = 1e-6
    resolution: int = 112
    frames_per_clip: int = 4
    frame_sampling: str = "uniform"
    name: str = ""

    def __post_init__(self) -> None:
        from learner.backbones import get_spec

        def fail(field: str, expected: str) -> None:
            raise ValueError(f"The {field!r} parameter of TrainConfig must be {expected}. "
                             f"Got {getattr(self, field)!r} instead.")

        try:
            spec = get_spec(self.backbone)
        except ValueError as exc:
            raise ValueError(f"The 'backbone' parameter of TrainConfig: {exc}") from None
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {OPTIMIZERS}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate <= 10):
            fail("learning_rate", "a float in (0, 10]")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 4096):
            fail("batch_size", "an int in [1, 4096]")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            fail("dropout", "a float in [0, 1)")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < 1):
            fail("weight_decay", "a float in [0, 1)")
        if not (isinstance(self.resolution, int) and spec.min_size <= self.resolution <= 1024):
            fail("resolution", f"an int in [{spec.min_size}, 1024] for {self.backbone}")
        if not (isinstance(self.frames_per_clip, int) and 1 <= self.frames_per_clip <= 256):
            fail("frames_per_clip", "an int in [1, 256]")
        if self.frame_sampling not in FRAME_SAMPLING:
            fail("frame_sampling", f"one of {FRAME_SAMPLING}")
        if self.weights is not None and not isinstance(self.weights, str):
            fail("weights", "a weights id (str) or None")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read configuration ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a configuration must be a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
