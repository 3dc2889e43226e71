"""The frozen extractor and the known-dataset store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fingerprint.extractor import ExtractorInfo, FeatureExtractor
from fingerprint.store import META_FEATURES, DatasetEntry, Store, StoreError

INFO = ExtractorInfo(backbone="resnet18", weights="random-0", resolution=32, feature_dim=4)
META = {k: 1.0 for k in META_FEATURES}


def test_extractor_is_frozen_and_averages_frames() -> None:
    extractor = FeatureExtractor("resnet18", resolution=32, frames=3)
    assert extractor.info.feature_dim == 512 and not any(p.requires_grad for p in extractor.model.parameters())
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    per_frame = np.stack([extractor.extract(clips[:, t:t + 1]) for t in range(3)], 1)
    np.testing.assert_allclose(extractor.extract(clips), per_frame.mean(1), rtol=1e-4, atol=1e-5)
    gray = rng.integers(0, 256, (2, 1, 40, 40, 1), dtype=np.uint8)
    np.testing.assert_allclose(extractor.extract(gray), extractor.extract(np.repeat(gray, 3, -1)), rtol=1e-5)
    again = FeatureExtractor("resnet18", resolution=32, frames=3)  # same seed, same features
    np.testing.assert_allclose(again.extract(gray), extractor.extract(gray), rtol=1e-5)
    assert extractor.model.training is False and torch.is_inference_mode_enabled() is False


def test_store_round_trip(tmp_path: Path) -> None:
    store = Store(INFO, [DatasetEntry("a", np.ones((3, 4)), META), DatasetEntry("b", np.zeros((2, 4)), META)])
    store.save(str(tmp_path / "s.npz"))
    loaded = Store.load(str(tmp_path / "s.npz"), expect=INFO)
    assert loaded.names == ["a", "b"] and loaded.info == INFO
    assert loaded.entries["a"].features.dtype == np.float16 and loaded.entries["b"].meta == META
    x, y = loaded.samples()
    assert x.shape == (5, 4) and y.tolist() == ["a", "a", "a", "b", "b"]
    assert loaded.without("a").names == ["b"] and loaded.without("a", "b").names == []


def test_store_bad_input(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="empty store"):
        Store(INFO).save(str(tmp_path / "e.npz"))
    with pytest.raises(StoreError, match=r"expected \[N, 4\]"):
        Store(INFO, [DatasetEntry("a", np.ones((3, 5)), META)])
    with pytest.raises(StoreError, match="meta-features missing: channels"):
        Store(INFO, [DatasetEntry("a", np.ones((3, 4)), {k: 1.0 for k in META_FEATURES if k != "channels"})])
    with pytest.raises(StoreError, match="store file not found"):
        Store.load(str(tmp_path / "missing.npz"))
    store = Store(INFO, [DatasetEntry("a", np.ones((3, 4)), META)])
    store.save(str(tmp_path / "s.npz"))
    other = ExtractorInfo(backbone="efficientnet_lite0", weights="abc", resolution=32, feature_dim=4)
    with pytest.raises(StoreError, match="store built with .*resnet18.*rebuild the store"):
        Store.load(str(tmp_path / "s.npz"), expect=other)


def test_loading_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array([{"format_version": 1}], dtype=object))
    with pytest.raises(StoreError, match="not a fingerprint store"):
        Store.load(str(path))


def test_extract_at_another_side_and_flipped() -> None:
    from fingerprint.extractor import FeatureExtractor

    x = np.random.default_rng(0).integers(0, 256, (3, 1, 24, 24, 3), dtype=np.uint8)
    extractor = FeatureExtractor("mobilenet_v3_small", None, resolution=32)
    plain, mirrored = extractor.extract(x), extractor.extract(x[:, :, :, ::-1])
    scale = np.abs(plain).max()  # random weights give tiny features: compare relative to their size

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.abs(a - b).max() <= 1e-4 * scale)

    assert not same(plain, mirrored)
    assert same(extractor.extract(x, flip=True), 0.5 * (plain + mirrored))
    assert same(extractor.extract(x, mirrored=True), mirrored)
    with pytest.raises(ValueError, match="'flip' and 'mirrored' exclude each other"):
        extractor.extract(x, flip=True, mirrored=True)
    assert not same(extractor.extract(x, resolution=48), plain)
    assert same(extractor.extract(x, resolution=32), plain)


def test_extract_pooled_stage_features() -> None:
    """What the probe reads by default: the pooled stage outputs (MobileNetV3-small: 24 + 40 + 48 + 96), per frame
    averaged over a clip like the penultimate features."""
    extractor = FeatureExtractor("mobilenet_v3_small", None, resolution=32, frames=2)
    clips = np.random.default_rng(0).integers(0, 256, (3, 2, 24, 24, 3), dtype=np.uint8)
    stages = extractor.extract(clips, pooling="stages")
    assert stages.shape == (3, 208) and extractor.extract(clips).shape == (3, 1024)
    per_frame = np.stack([extractor.extract(clips[:, t:t + 1], pooling="stages") for t in range(2)], 1)
    np.testing.assert_allclose(stages, per_frame.mean(1), rtol=1e-4, atol=1e-6)
    assert extractor.extract(clips[:0], pooling="stages").shape == (0, 208)
    with pytest.raises(ValueError, match="pooling must be one of head, stages, got 'mean'"):
        extractor.extract(clips, pooling="mean")


def test_passes_are_capped_in_activations_with_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 1, 20, 20, 3), dtype=np.uint8)
    clips = rng.integers(0, 256, (5, 3, 20, 20, 3), dtype=np.uint8)
    per_pixel = FeatureExtractor("mobilenet_v3_small", None, resolution=32).model.activations_per_pixel()
    assert per_pixel == 4.5  # its widest layer: 72 channels at a quarter of the side
    capped = FeatureExtractor("mobilenet_v3_small", None, resolution=32, frames=3,
                              batch_activations=int(2 * 32 * 32 * per_pixel))
    whole = FeatureExtractor("mobilenet_v3_small", None, resolution=32, frames=3, batch_activations=0)
    passes: list[int] = []
    features = capped.model.features
    monkeypatch.setattr(capped.model, "features", lambda batch: passes.append(len(batch)) or features(batch))
    scale = np.abs(whole.extract(images)).max()
    assert np.abs(capped.extract(images) - whole.extract(images)).max() <= 1e-4 * scale
    assert passes == [2, 2, 1]  # 2 images of 32 px per pass
    passes.clear()
    assert np.abs(capped.extract(clips) - whole.extract(clips)).max() <= 1e-4 * scale
    assert passes == [3] * 5  # a clip's 3 frames are 3 images: one clip per pass (at least one)
    passes.clear()
    capped.extract(images, resolution=16)  # 4 times as many images at half the side
    assert passes == [5]
