"""Shared fixtures: paths to the shared data and factories for tiny AutoDL datasets."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The triton guard before anything imports torch: test modules import torchvision directly, and TensorFlow
# (loaded by earlier test modules) followed by triton segfaults (see learner/_triton_guard.py).
import learner  # noqa: E402,F401

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUTODL_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "data" / "autodl_samples"
RAW = SHARED / "data" / "raw"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"official sample data not found at {SAMPLES} (set AUTODL_SHARED)")
    return SAMPLES


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    if not RAW.is_dir():
        pytest.fail(f"raw image pool not found at {RAW} (set AUTODL_SHARED)")
    return RAW


def random_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.fixture
def make_array_dataset(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """Factory: write random arrays as an AutoDL dataset; return (folder, the arrays)."""
    from metadata.convert import convert_arrays

    def make(name: str = "tiny", *, n_train: int = 12, n_test: int = 6, shape: tuple[int, ...] = (8, 8, 3),
             classes: int = 3, multilabel: bool = False, fmt: str = "compressed", shards: int = 1,
             seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        arrays = {"x_train": random_images(n_train, shape, seed), "x_test": random_images(n_test, shape, seed + 1)}
        for split, n in (("train", n_train), ("test", n_test)):
            if multilabel:
                y = (rng.random((n, classes)) < 0.5).astype(np.int64)
            else:
                y = np.arange(n) % classes
            arrays[f"y_{split}"] = y
        out = tmp_path / name
        convert_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], str(out),
                       name=name, output_dim=classes, fmt=fmt, shards=shards, progress=False, seed=seed)
        return out, arrays

    return make
