"""Inference rate per images in one forward pass: why the CPU passes are capped in activations, not in samples.

    python benchmarks/forward_batch.py [--networks efficientnet_lite0,efficientnet_lite2,resnet18]
        [--sides 64,128,224] [--batches 4,8,16,32,64] [--samples 128] [--repeats 2] [--frames 1] [--weights-dir bundle/weights]

For each network and input side, `FeatureExtractor.extract` of the same uint8 samples with a forward pass of
each batch size (and with the cap `learner.data.forward_batch` picks from the network's activations per input pixel), in images/s and as a ratio
against a batch of 64 samples (the fixed batch before the cap). Weights from `--weights-dir` when a file of the
network is there (`<network>-*.pt`), else random (the rate does not depend on them). `--frames 4` measures
clips (every frame of a sample goes through the same pass).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import learner  # noqa: E402,F401  (triton guard before torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fingerprint.extractor import FeatureExtractor  # noqa: E402
from learner.data import DEFAULT_FORWARD_ACTIVATIONS, forward_batch  # noqa: E402


def rate(extractor: FeatureExtractor, x: np.ndarray, side: int, repeats: int = 2) -> float:
    extractor.extract(x[:64], resolution=side)  # warm-up: the first pass of a shape is slow
    start = time.perf_counter()
    for _ in range(repeats):
        extractor.extract(x, resolution=side)
    return repeats * len(x) * x.shape[1] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="efficientnet_lite0,efficientnet_lite2,resnet18")
    parser.add_argument("--sides", default="64,128,224")
    parser.add_argument("--batches", default="4,8,16,32,64")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--weights-dir", default="bundle/weights")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if 64 not in batches:
        batches.append(64)
    print(f"inference rate, {os.cpu_count()} cores, {torch.get_num_threads()} threads, {args.samples} samples of "
          f"{args.frames} frame(s); images/s (ratio against a batch of 64 samples); cap: "
          f"{DEFAULT_FORWARD_ACTIVATIONS} activations per pass")
    print("| network | side | " + " | ".join(f"batch {b}" for b in batches) + " | capped (batch) |")
    print("|---|---|" + "---|" * (len(batches) + 1))
    for network in args.networks.split(","):
        files = sorted(glob.glob(os.path.join(args.weights_dir, f"{network}-*.pt")))
        weights = files[0] if files else None
        for side in (int(s) for s in args.sides.split(",")):
            x = np.random.default_rng(0).integers(0, 256, (args.samples, args.frames, side, side, 3), dtype=np.uint8)
            rates = {}
            for b in batches:
                extractor = FeatureExtractor(network, weights, resolution=side, frames=args.frames, batch_size=b,
                                             batch_activations=0)
                rates[b] = rate(extractor, x, side, args.repeats)
            capped = FeatureExtractor(network, weights, resolution=side, frames=args.frames, batch_size=64)
            chunk = forward_batch(64, side, args.frames, per_pixel=capped.model.activations_per_pixel(),
                                  device=capped.device)
            capped_rate = rate(capped, x, side, args.repeats)
            cells = " | ".join(f"{rates[b]:.0f} ({rates[b] / rates[64]:.2f})" for b in batches)
            print(f"| {network}{'' if weights else ' (random)'} | {side} | {cells} | "
                  f"{capped_rate:.0f} ({capped_rate / rates[64]:.2f}) ({chunk}) |", flush=True)


if __name__ == "__main__":
    main()
