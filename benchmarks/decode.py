"""Decode throughput: `metadata.arrays.to_arrays` versus a bare tf.data decode loop.

    python benchmarks/decode.py [--raw ../shared/data/raw] [--datasets cifar10,mnist,clothing] [--repeats 3]

Converts the named pool datasets (train split) to AutoDL format in a temporary folder, then
times, on the same TFRecord files in the same run: (a) a bare loop, TFRecordDataset -> parse ->
decode_image (-> resize for variable-size data) with parallel map, iterated sample by sample into
numpy; (b) the fast path into one uint8 array. Prints images/s and the ratio (target >= 0.8). Then
what the Model meets on the platform, a `tf.data.Dataset` of decoded float frames (`get_dataset()`): (c) its
bare batched iteration, (d) `to_arrays` of it into one uint8 array at the stored size (what the engine
does to the test set before the first answer).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

from metadata.arrays import to_arrays  # noqa: E402
from metadata.convert import convert_image_folders  # noqa: E402
from metadata.reader import AutoDLDataset  # noqa: E402

RESIZE = (112, 112)


def bare_loop(dataset: AutoDLDataset, size: tuple[int, int] | None) -> int:
    channels = dataset.get_metadata().get_num_channels()

    def decode(record: tf.Tensor) -> tf.Tensor:
        _, features = tf.io.parse_single_sequence_example(
            record, sequence_features={"0_compressed": tf.io.VarLenFeature(tf.string)})
        image = tf.io.decode_image(features["0_compressed"].values[0], channels=channels,
                                   expand_animations=False)
        if size is not None:
            image = tf.cast(tf.image.resize(image, size, antialias=True), tf.uint8)
        return image

    n = 0
    for image in dataset.record_dataset().map(decode, num_parallel_calls=tf.data.AUTOTUNE):
        image.numpy()
        n += 1
    return n


def bare_platform_loop(dataset: AutoDLDataset) -> int:
    n = 0
    for x, _ in dataset.get_dataset().batch(64):
        n += len(x.numpy())
    return n


def best_rate(fn, repeats: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return count / best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default=str(Path(__file__).resolve().parents[2] / "shared/data/raw"))
    parser.add_argument("--datasets", default="cifar10,mnist,clothing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            out = os.path.join(tmp, name)
            convert_image_folders(os.path.join(args.raw, name, "train"), out, name=name, test_fraction=0.1,
                                  progress=False)
            split = AutoDLDataset(os.path.join(out, f"{name}.data", "train"))
            fixed = split.get_metadata().get_matrix_size()[0] > 0
            size = None if fixed else RESIZE
            bare, n = best_rate(lambda: bare_loop(split, size), args.repeats)
            fast, _ = best_rate(lambda: len(to_arrays(split, size=size)), args.repeats)
            platform_bare = platform_fast = float("nan")
            if fixed:  # variable sizes cannot be batched bare
                side = split.get_metadata().get_matrix_size()[0]
                platform_bare, _ = best_rate(lambda: bare_platform_loop(split), args.repeats)
                platform_fast, _ = best_rate(lambda: len(to_arrays(split.get_dataset(), size=(side, side))),
                                             args.repeats)
            rows.append((name, n, "as stored" if fixed else f"resize {size[0]}x{size[1]}", bare, fast,
                         platform_bare, platform_fast))
    print(f"decode throughput, {os.cpu_count()} cores, best of {args.repeats}")
    print("| dataset | images | size | bare tf.data loop (img/s) | to_arrays (img/s) | ratio | platform object, "
          "bare (img/s) | to_arrays of it (img/s) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, size, bare, fast, pbare, pfast in rows:
        print(f"| {name} | {n} | {size} | {bare:,.0f} | {fast:,.0f} | {fast / bare:.2f} | {pbare:,.0f} | "
              f"{pfast:,.0f} | {pfast / pbare:.2f} |")


if __name__ == "__main__":
    main()
