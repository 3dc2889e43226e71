"""The training loop learns for real, keeps its time budget and predicts in order."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from learner.config import TrainConfig
from learner.backbones import get_backbone
from learner.data import (DEFAULT_FORWARD_ACTIVATIONS, TrainSet, augment, forward_batch, load_test_array,
                          load_train_set, stratified_split, to_float_batch)
from learner.trainer import Trainer
from metadata.convert import convert_image_folders
from metadata.reader import AutoDLDataset
from scoring.metrics import nauc


@pytest.fixture(scope="module")
def mnist_two_classes(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mnist2") / "mnist2"
    convert_image_folders(str(raw_dir / "mnist"), str(out), classes=["3", "8"], max_per_class=150, progress=False)
    return out


def _config(**kwargs: object) -> TrainConfig:
    base = dict(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=32, learning_rate=1e-3)
    base.update(kwargs)
    return TrainConfig(**base)


def test_learns_real_digits(mnist_two_classes: Path) -> None:
    data = load_train_set(AutoDLDataset(str(mnist_two_classes / "mnist2.data/train")), resolution=32, batch_size=32)
    assert data.x.shape == (300, 1, 32, 32, 1) and data.stream is None
    train, val = stratified_split(data.y, 0.25)
    trainer = Trainer(_config(), num_classes=2, in_channels=1)
    trainer.set_train_data(TrainSet(data.x[train], data.y[train]))
    best = 0.0
    for _ in range(6):  # at most 240 steps
        trainer.train_for(600, max_steps=40)
        best = max(best, nauc(data.y[val], trainer.predict(data.x[val])))
        if best >= 0.9:
            break
    assert best >= 0.9, best
    test = load_test_array(AutoDLDataset(str(mnist_two_classes / "mnist2.data/test")), resolution=32)
    prediction = trainer.predict(test)
    assert prediction.dtype == np.float32 and prediction.shape == (len(test), 2)
    np.testing.assert_allclose(prediction.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(trainer.predict(test[::-1]), prediction[::-1], rtol=1e-4, atol=1e-6)


def test_multilabel_learns() -> None:
    """Three labels: is there a red, a green, a blue square in the image (any subset)."""
    rng = np.random.default_rng(0)
    n = 240
    y = (rng.random((n, 3)) < 0.5).astype(np.float32)
    x = np.full((n, 1, 32, 32, 3), 40, dtype=np.uint8)
    for i in range(n):
        for k in np.flatnonzero(y[i]):
            r, c = rng.integers(0, 24, 2)
            x[i, 0, r:r + 8, c:c + 8] = 0
            x[i, 0, r:r + 8, c:c + 8, k] = 255
    trainer = Trainer(_config(learning_rate=2e-3), num_classes=3)
    trainer.set_train_data(TrainSet(x[:180], y[:180]))
    assert trainer.multilabel
    best = 0.0
    for _ in range(8):
        trainer.train_for(600, max_steps=40)
        prediction = trainer.predict(x[180:])
        assert ((prediction >= 0) & (prediction <= 1)).all()
        best = max(best, nauc(y[180:], prediction))
        if best >= 0.8:
            break
    assert best >= 0.8, best


def test_train_for_keeps_its_time_slice() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 1, 64, 64, 3), dtype=np.uint8)
    y = np.eye(4, dtype=np.float32)[np.arange(64) % 4]
    trainer = Trainer(_config(resolution=64), num_classes=4)
    trainer.set_train_data(TrainSet(x, y))
    trainer.train_for(0.5)  # warm-up
    for seconds in (0.5, 2.0):
        start = time.perf_counter()
        stats = trainer.train_for(seconds)
        elapsed = time.perf_counter() - start
        assert stats.steps >= 1 and elapsed < seconds + 1.0, (seconds, elapsed)


def test_non_finite_loss_restores_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 1, 32, 32, 3), dtype=np.uint8)
    y = np.eye(2, dtype=np.float32)[np.arange(16) % 2]
    trainer = Trainer(_config(), num_classes=2)
    trainer.set_train_data(TrainSet(x, y))
    trainer.train_for(60, max_steps=2)
    before = trainer.predict(x)
    lr = trainer.optimizer.param_groups[0]["lr"]
    calls = iter([float("nan")])
    real_step = trainer._step
    monkeypatch.setattr(trainer, "_step", lambda a, b: next(calls, None) or real_step(a, b))
    trainer.train_for(60, max_steps=1)
    assert trainer.divergences == 1 and trainer.optimizer.param_groups[0]["lr"] == lr / 2
    assert np.isfinite(trainer.predict(x)).all() and before.shape == (16, 2)


def test_cache_cap_streams_the_rest(mnist_two_classes: Path) -> None:
    split = AutoDLDataset(str(mnist_two_classes / "mnist2.data/train"))
    data = load_train_set(split, resolution=16, batch_size=8, max_bytes=50 * 16 * 16)
    assert 0 < len(data) < 300 and data.stream is not None
    shapes = {data.sample(8)[0].shape for _ in range(4)}
    assert shapes == {(8, 1, 16, 16, 1)}


def test_sample_cap_is_a_subset_unless_the_rest_joins_the_cache(mnist_two_classes: Path) -> None:
    split = AutoDLDataset(str(mnist_two_classes / "mnist2.data/train"))
    subset = load_train_set(split, resolution=16, batch_size=8, max_samples=40)
    assert len(subset) == 40 and subset.stream is None
    whole = load_train_set(split, resolution=16, batch_size=8, max_samples=1000, stream_rest=True)
    assert len(whole) == 300 and whole.stream is None
    for source in (split, split.get_dataset()):  # ours skips records undecoded; the platform's object decodes them
        capped = load_train_set(source, resolution=16, batch_size=64, max_samples=40, stream_rest=True)
        assert len(capped) == 40 and capped.stream is not None and capped.grow
        # the tail joins the cache batch by batch, in dataset order; training batches come from the cache alone
        shapes = {capped.sample(8)[0].shape for _ in range(20)}
        assert shapes == {(8, 1, 16, 16, 1)} and capped.stream is None and len(capped) == 300
        assert np.abs(capped.x.astype(int) - whole.x).max() <= (0 if source is split else 1)  # float path rounds
        np.testing.assert_array_equal(capped.y, whole.y)


def test_a_growing_cache_that_fills_up_streams_the_rest_repeating(mnist_two_classes: Path) -> None:
    split = AutoDLDataset(str(mnist_two_classes / "mnist2.data/train"))
    data = load_train_set(split, resolution=16, batch_size=10, max_samples=40, stream_rest=True,
                          max_bytes=100 * 16 * 16, shuffle_buffer=16)
    assert data.grow and len(data) == 40
    for _ in range(8):
        data.sample(10)
    # decoded 40 at a time (the first read's batch): the next 40 fitted, the 40 after them did not
    assert not data.grow and len(data) == 80 and data.read == 80
    everything = load_train_set(split, resolution=16, batch_size=8)
    np.testing.assert_array_equal(data.x, everything.x[:80])
    streamed = np.concatenate([next(data.stream)[0] for _ in range(60)])  # 600 draws of the 220 uncached
    tail = {x.tobytes() for x in everything.x[80:]}
    assert {x.tobytes() for x in streamed} == tail


def test_stratified_split_and_augment() -> None:
    y = np.eye(3, dtype=np.float32)[[0] * 10 + [1] * 5 + [2]]
    train, val = stratified_split(y, 0.2, seed=1)
    assert np.bincount(y[val].argmax(1), minlength=3).tolist() == [2, 1, 0]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 16
    batch = to_float_batch(np.zeros((4, 24, 24, 3), np.uint8), device=__import__("torch").device("cpu"))
    assert augment(batch).shape == (4, 3, 24, 24)


def test_missing_weights_dir_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs weights 'imagenet': pass weights_dir"):
        Trainer(TrainConfig(backbone="resnet18"), num_classes=2)


def test_inference_passes_are_capped_in_activations_on_a_cpu() -> None:
    import torch

    lite = get_backbone("efficientnet_lite0", num_classes=2, random_init=True)
    assert lite.activations_per_pixel() == 24.0 and lite.training  # 96 channels at half the side; mode kept
    assert get_backbone("resnet18", num_classes=2, random_init=True).activations_per_pixel() == 16.0
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert forward_batch(64, 224, per_pixel=24, device=cpu) == 4 == DEFAULT_FORWARD_ACTIVATIONS // (24 * 224**2)
    assert forward_batch(64, 64, per_pixel=24, device=cpu) == 50
    assert forward_batch(64, 64, per_pixel=4.5, device=cpu) == 64  # a lighter network: the caller's batch
    assert forward_batch(64, 128, 4, per_pixel=24, device=cpu) == 3  # every frame of a clip counts
    assert forward_batch(64, 4000, per_pixel=24, device=cpu) == 1  # at least one sample
    assert forward_batch(64, 224, per_pixel=24, device=gpu) == 64 == forward_batch(64, 224, activations=0)
    x = np.random.default_rng(0).integers(0, 256, (7, 1, 32, 32, 3), dtype=np.uint8)
    config = TrainConfig(backbone="mobilenet_v3_small", weights=None, resolution=32, batch_size=4)
    capped = Trainer(config, num_classes=3, device=cpu, batch_activations=int(3 * 32 * 32 * 4.5))
    whole = Trainer(config, num_classes=3, device=cpu, batch_activations=0)
    whole.model.load_state_dict(capped.model.state_dict())
    passes: list[int] = []
    forward = capped.model.forward
    capped.model.forward = lambda batch: passes.append(len(batch)) or forward(batch)
    np.testing.assert_allclose(capped.predict(x), whole.predict(x), rtol=1e-4, atol=1e-6)
    assert passes == [3, 3, 1]
