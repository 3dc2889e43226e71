"""Frame sampling and frame averaging (Eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.config import TrainConfig
from learner.data import TrainSet
from learner.trainer import Trainer
from learner.video import average_frames, sample_frame_indices, sample_frames


def test_sampling_strategies() -> None:
    assert sample_frame_indices(10, 4, "uniform").tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(10, 5, "segments").tolist() == [1, 3, 5, 7, 9]
    assert sample_frame_indices(10, 4, "middle").tolist() == [3, 4, 5, 6]
    assert sample_frame_indices(2, 4, "uniform").tolist() == [0, 0, 1, 1]  # short clips repeat frames
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_frame_indices(12, 4, "segments", rng)
        assert [3 * i <= k < 3 * (i + 1) for i, k in enumerate(idx)] == [True] * 4
    with pytest.raises(ValueError, match="unknown frame sampling"):
        sample_frame_indices(5, 2, "zigzag")


def test_sample_frames_per_clip() -> None:
    x = np.arange(2 * 8).reshape(2, 8, 1, 1, 1)
    assert sample_frames(x, 2, "uniform")[:, :, 0, 0, 0].tolist() == [[0, 7], [8, 15]]
    jittered = sample_frames(x, 4, "segments", np.random.default_rng(1))
    assert jittered.shape == (2, 4, 1, 1, 1)


def test_average_frames() -> None:
    out = torch.arange(12.0).view(6, 2)
    assert average_frames(out, 3).tolist() == [[2.0, 3.0], [8.0, 9.0]]
    with pytest.raises(ValueError, match="not a multiple"):
        average_frames(out, 4)


def test_clip_prediction_is_the_mean_of_frame_predictions() -> None:
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (3, 4, 32, 32, 3), dtype=np.uint8)
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, frames_per_clip=4)
    trainer = Trainer(config, num_classes=5, multilabel=False)
    per_frame = np.stack([trainer.predict(clips[:, t:t + 1]) for t in range(4)], axis=1)
    np.testing.assert_allclose(trainer.predict(clips), per_frame.mean(axis=1), rtol=1e-4, atol=1e-6)


def test_video_training_runs_with_fewer_frames_than_stored() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 6, 32, 32, 3), dtype=np.uint8)
    y = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, frames_per_clip=3,
                         frame_sampling="segments", batch_size=4)
    trainer = Trainer(config, num_classes=2)
    trainer.set_train_data(TrainSet(x, y))
    assert trainer.train_for(30, max_steps=2).steps == 2
    assert trainer.predict(x).shape == (8, 2)
