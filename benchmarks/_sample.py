"""The first training samples and test samples of an AutoDL dataset folder, with the test labels: what the
probe benchmarks fit and score on."""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np


def read_sample(root: str, *, train: int, test: int, size: tuple[int, int] | None) -> tuple[Any, Any, np.ndarray]:
    """`(train, test, y_test)`: the first `train` and `test` samples decoded at `size` (None: their own size) as
    `metadata.arrays.Arrays`, and the solution's rows of those test samples."""
    from metadata.arrays import to_arrays
    from metadata.reader import AutoDLDataset
    from scoring.files import read_prediction

    data = glob.glob(os.path.join(root, "*.data"))
    solutions = glob.glob(os.path.join(root, "*.solution"))
    if not data or not solutions:
        raise SystemExit(f"{root}: no <name>.data folder and <name>.solution file")
    test_arrays = to_arrays(AutoDLDataset(os.path.join(data[0], "test")).get_dataset().take(test), size=size)
    train_arrays = to_arrays(AutoDLDataset(os.path.join(data[0], "train")).get_dataset().take(train), size=size)
    return train_arrays, test_arrays, read_prediction(solutions[0])[:len(test_arrays.x)]
