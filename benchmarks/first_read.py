"""The first answer's reads: the storage peek, and a read with and without tf.data's default rewrites.

    python benchmarks/first_read.py [--datasets DIR...] [--repeats 9] [--side 224]

On each AutoDL dataset (default: the two official samples), alternating within one process and on the
`tf.data.Dataset` the platform hands to the Model (`get_dataset()`, which parses sequentially, as the official
reader does): (a) `metadata.arrays.max_side` (single ops) against `_max_side_iterating` (a Python iterator, the
peek before session 20; neither reads where the dataset declares its size), both for the first 64 samples and
stopping at `--side`; (b) `to_arrays` of the first 512 training samples and of the test split at `--side` as it
reads now (tf.data's default graph rewrites, which parallelize the platform's parse map) against session 20's
reads (`apply_default_optimizations = False` on the dataset). Prints medians (seconds) and the ratio new / before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

from metadata import arrays  # noqa: E402
from metadata.reader import AutoDLDataset  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "autodl_samples"


def _splits(folder: Path) -> tuple[AutoDLDataset, AutoDLDataset]:
    data = next(folder.glob("*.data"))
    return AutoDLDataset(str(data / "train")), AutoDLDataset(str(data / "test"))


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(folder: Path, repeats: int, side: int) -> dict[str, tuple[float, float]]:
    train, test = _splits(folder)
    train_ds, test_ds = train.get_dataset(), test.get_dataset()
    arrays.max_side(train_ds, 1)  # the first op of the process is slow whoever runs it
    static = train_ds.element_spec[0].shape[-3:-1].is_fully_defined()
    no_rewrites = tf.data.Options()
    no_rewrites.experimental_optimization.apply_default_optimizations = False
    bare_train, bare_test = train_ds.with_options(no_rewrites), test_ds.with_options(no_rewrites)
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "peek (64 samples, stop at side)": (
            lambda: arrays.max_side(train_ds, 64, enough=side),
            lambda: static or arrays._max_side_iterating(train_ds, 64, None, side)),
        "to_arrays train (512)": (lambda: arrays.to_arrays(train_ds, size=(side, side), max_samples=512),
                                  lambda: arrays.to_arrays(bare_train, size=(side, side), max_samples=512)),
        "to_arrays test": (lambda: arrays.to_arrays(test_ds, size=(side, side)),
                           lambda: arrays.to_arrays(bare_test, size=(side, side))),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    for _ in range(repeats):
        for name, (new, before) in cases.items():
            times[name][0].append(_timed(new))
            times[name][1].append(_timed(before))
    return {name: (statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", type=Path,
                        default=[SAMPLES / "Monkeys", SAMPLES / "miniciao"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--side", type=int, default=224)
    args = parser.parse_args()
    print("| dataset | read | new (s) | before (s) | new / before |")
    print("|---|---|---|---|---|")
    for folder in args.datasets:
        for name, (new, before) in measure(folder, args.repeats, args.side).items():
            ratio = f"{new / before:.2f}" if before >= 1e-3 else "-"  # a declared size: nothing read
            print(f"| {folder.name} | {name} | {new:.3f} | {before:.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
