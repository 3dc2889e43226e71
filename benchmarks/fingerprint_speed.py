"""Fingerprint speed: extraction images/s versus a bare ResNet18 forward, and ms per selection.

    python benchmarks/fingerprint_speed.py [--resolution 112] [--batch 64] [--datasets 8]

Extraction: `FeatureExtractor.extract` on uint8 images (conversion, normalisation, forward) next
to a bare `inference_mode` forward of the same network on a ready float tensor. Selection: each
selector fitted on a synthetic store (Gaussian clusters, 512-d, 200 vectors per dataset), then the
mean time of `rank` on batches of 64.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fingerprint  # noqa: E402,F401
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fingerprint.extractor import ExtractorInfo, FeatureExtractor  # noqa: E402
from fingerprint.selectors import get_selector, list_selectors  # noqa: E402
from fingerprint.store import META_FEATURES, DatasetEntry, Store  # noqa: E402


def rate(fn, n_images: int, repeats: int = 5) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--datasets", type=int, default=8)
    args = parser.parse_args()
    r, b = args.resolution, args.batch
    extractor = FeatureExtractor("resnet18", resolution=r, batch_size=b)
    images = np.random.default_rng(0).integers(0, 256, (b, 1, r, r, 3), dtype=np.uint8)
    x = torch.rand(b, 3, r, r).contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with torch.inference_mode():
            extractor.model.body(x)

    ours, reference = rate(lambda: extractor.extract(images), b), rate(bare, b)
    print(f"fingerprint speed, {os.cpu_count()} cores, resnet18 at {r} px, batch {b}")
    print("| extraction | images/s |\n|---|---|")
    print(f"| FeatureExtractor.extract | {ours:.0f} |\n| bare ResNet18 forward | {reference:.0f} |\n"
          f"| ratio | {ours / reference:.2f} |")

    rng = np.random.default_rng(1)
    info = ExtractorInfo("resnet18", "synthetic", r, 512)
    centres = rng.normal(0, 1, (args.datasets, 512))
    store = Store(info, [DatasetEntry(f"d{i}", centres[i] + rng.normal(0, 2, (200, 512)),
                                      {k: float(rng.integers(1, 100)) for k in META_FEATURES})
                         for i in range(args.datasets)])
    print(f"\n| selector | fit (s) | ms per selection at batch {b} |\n|---|---|---|")
    for name in list_selectors():
        start = time.perf_counter()
        selector = get_selector(name).fit(store)
        fit = time.perf_counter() - start
        batch = (centres[0] + rng.normal(0, 2, (b, 512))).astype(np.float32)
        meta = store.entries["d0"].meta
        selector.rank(batch, meta)
        start = time.perf_counter()
        for _ in range(20):
            selector.rank(batch, meta)
        print(f"| {name} | {fit:.1f} | {1000 * (time.perf_counter() - start) / 20:.2f} |")


if __name__ == "__main__":
    main()
