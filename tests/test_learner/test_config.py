"""The configuration record: JSON round trip and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.config import TrainConfig


def test_json_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(backbone="efficientnet_lite0", optimizer="sgd", learning_rate=0.05, batch_size=64,
                         dropout=0.5, resolution=96, frames_per_clip=8, frame_sampling="segments", name="x")
    config.save(str(tmp_path / "c.json"))
    assert TrainConfig.load(str(tmp_path / "c.json")) == config


@pytest.mark.parametrize("field, value, match", [
    ("backbone", "vgg99", "unknown backbone"),
    ("optimizer", "rmsprop", "'optimizer' parameter of TrainConfig must be one of"),
    ("learning_rate", 0.0, "'learning_rate'"),
    ("batch_size", 0, "'batch_size'"),
    ("batch_size", 3.5, "'batch_size'"),
    ("dropout", 1.0, "'dropout'"),
    ("resolution", 64, r"'resolution' .* \[75, 1024\] for inception_v3"),
    ("frames_per_clip", 0, "'frames_per_clip'"),
    ("frame_sampling", "random", "'frame_sampling'"),
])
def test_invalid_values_are_named(field: str, value: object, match: str) -> None:
    kwargs = {"backbone": "inception_v3", "resolution": 96}
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"backbone": "resnet18", "colour": "red"}')
    with pytest.raises(ValueError, match=r"a\.json: unknown TrainConfig field\(s\): colour"):
        TrainConfig.load(str(tmp_path / "a.json"))
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"b\.json: cannot read configuration"):
        TrainConfig.load(str(tmp_path / "b.json"))
