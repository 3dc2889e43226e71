"""Build the known-dataset store.

    python -m fingerprint.extract --dataset DIR [DIR ...] --samples N --out STORE
                                  [--backbone resnet18] [--weights FILE] [--resolution 112] [--seed 0]

For each AutoDL dataset: N training samples (the first N of a seeded shuffle of at most 4N read),
their fingerprint vectors (float16) and simple meta-features. Without --weights the network keeps
a seeded random initialisation (say so in what you report).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fingerprint  # noqa: F401  (triton guard)
from fingerprint.extractor import FeatureExtractor
from fingerprint.store import DatasetEntry, Store, meta_features_of

__all__ = ["dataset_fingerprint", "build_store", "main"]


def _median_size(split: object, n: int = 16) -> tuple[int, int]:
    """Median (height, width) of the first `n` images of a split whose sizes vary."""
    import tensorflow as tf

    shapes = [tuple(shape[1:3]) for shape in split.uint8_dataset().take(n).map(
        lambda x, y: tf.shape(x)).as_numpy_iterator()]
    return int(np.median([s[0] for s in shapes])), int(np.median([s[1] for s in shapes]))


def dataset_fingerprint(directory: str, extractor: FeatureExtractor, samples: int, seed: int = 0
                        ) -> tuple[str, np.ndarray, dict[str, float]]:
    """(name, features [<=samples, D], meta-features) of the train split of one AutoDL dataset."""
    from metadata.arrays import to_arrays
    from metadata.check import find_dataset
    from metadata.reader import AutoDLDataset

    name, data_dir = find_dataset(directory)
    split = AutoDLDataset(os.path.join(data_dir, "train"))
    arrays = to_arrays(split, size=(extractor.resolution, extractor.resolution), max_samples=4 * samples)
    pick = np.random.default_rng(seed).permutation(len(arrays))[:samples]
    row, col = split.get_metadata().get_matrix_size()
    size = (row, col) if row > 0 and col > 0 else _median_size(split)
    meta = meta_features_of(split.get_metadata(), arrays.y, size)
    return name, extractor.extract(arrays.x[pick]), meta


def build_store(dataset_dirs: list[str], extractor: FeatureExtractor, samples: int, *, seed: int = 0,
                progress: bool = True) -> Store:
    from tqdm import tqdm

    store = Store(extractor.info)
    for directory in tqdm(dataset_dirs, desc="fingerprints", unit="dataset", disable=not progress):
        name, feats, meta = dataset_fingerprint(directory, extractor, samples, seed)
        if name in store.entries:
            raise ValueError(f"{directory}: a dataset named {name!r} is already in the store")
        store.add(DatasetEntry(name, feats, meta))
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fingerprint.extract", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", required=True)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--weights", help="local weights file of the backbone")
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    extractor = FeatureExtractor(args.backbone, args.weights, resolution=args.resolution, seed=args.seed)
    store = build_store(args.dataset, extractor, args.samples, seed=args.seed)
    store.save(args.out)
    print(f"{args.out}: {len(store)} datasets, {sum(len(e.features) for e in store.entries.values())} vectors of "
          f"{store.info.feature_dim} ({store.info.backbone}, weights {store.info.weights}), "
          f"{os.path.getsize(args.out) / 1e6:.1f} MB, {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
