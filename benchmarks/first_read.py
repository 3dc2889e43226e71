"""The first answer's reads: the storage peek, and `to_arrays` with our read options against the alternatives.

    python benchmarks/first_read.py [--datasets DIR...] [--repeats 9] [--side 224] [--samples 512]

On each AutoDL dataset (default: the two official samples), alternating within one process and on the
`tf.data.Dataset` the platform hands to the Model (`get_dataset()`, which parses sequentially, as the official
reader does): (a) `metadata.arrays.max_side` (single ops) against `_max_side_iterating` (a Python iterator, the
peek before session 20; neither reads where the dataset declares its size), both for the first 64 samples and
stopping at `--side`; (b) `to_arrays` of the first `--samples` training samples and of the whole test split at
`--side` with our read options (`metadata.arrays._read_options`: of tf.data's default rewrites only
`map_parallelization`), with tf.data's defaults, and with no rewrites (session 20). Prints medians (seconds) and
the ratios of ours to each.
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


def _options(default_rewrites: bool) -> Callable[[], tf.data.Options]:
    def options() -> tf.data.Options:
        chosen = tf.data.Options()
        chosen.experimental_optimization.apply_default_optimizations = default_rewrites
        return chosen
    return options


READS = {"ours": arrays._read_options, "tf.data defaults": _options(True), "no rewrites": _options(False)}


def measure(folder: Path, repeats: int, side: int, samples: int) -> dict[str, dict[str, float]]:
    """Median seconds per read and variant (the peek: "ours" and "iterating")."""
    train, test = _splits(folder)
    train_ds, test_ds = train.get_dataset(), test.get_dataset()
    arrays.max_side(train_ds, 1)  # the first op of the process is slow whoever runs it
    static = train_ds.element_spec[0].shape[-3:-1].is_fully_defined()
    reads: dict[str, Callable[[], Any]] = {
        f"to_arrays train ({samples})": lambda: arrays.to_arrays(train_ds, size=(side, side), max_samples=samples),
        "to_arrays test": lambda: arrays.to_arrays(test_ds, size=(side, side)),
    }
    peek = "peek (64 samples, stop at side)"
    times: dict[str, dict[str, list[float]]] = {peek: {"ours": [], "iterating": []}}
    times.update({name: {variant: [] for variant in READS} for name in reads})
    ours = arrays._read_options
    try:
        for _ in range(repeats):
            times[peek]["ours"].append(_timed(lambda: arrays.max_side(train_ds, 64, enough=side)))
            times[peek]["iterating"].append(
                _timed(lambda: static or arrays._max_side_iterating(train_ds, 64, None, side)))
            for name, read in reads.items():
                for variant, options in READS.items():
                    arrays._read_options = options
                    times[name][variant].append(_timed(read))
    finally:
        arrays._read_options = ours
    return {name: {variant: statistics.median(values) for variant, values in row.items()}
            for name, row in times.items()}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b >= 1e-3 else "-"  # a declared size: nothing read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", type=Path,
                        default=[SAMPLES / "Monkeys", SAMPLES / "miniciao"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    print("| dataset | read | ours (s) | tf.data defaults (s) | no rewrites (s) | ours / defaults | ours / none |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.datasets:
        for name, row in measure(folder, args.repeats, args.side, args.samples).items():
            if "iterating" in row:  # the peek: ours against the iterating peek
                print(f"| {folder.name} | {name} | {row['ours']:.3f} | | {row['iterating']:.3f} (iterating) | "
                      f"| {_ratio(row['ours'], row['iterating'])} |", flush=True)
                continue
            ours, defaults, none = row["ours"], row["tf.data defaults"], row["no rewrites"]
            print(f"| {folder.name} | {name} | {ours:.3f} | {defaults:.3f} | {none:.3f} | {_ratio(ours, defaults)} | "
                  f"{_ratio(ours, none)} |", flush=True)


if __name__ == "__main__":
    main()
