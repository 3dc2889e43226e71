"""Validate an AutoDL dataset folder and print a one-screen summary.

    python -m metadata.check DATASET_DIR

DATASET_DIR holds `<name>.data/` (or is it). Checks: both splits' metadata parse; record counts
equal `sample_count`; every record parses and decodes; frame counts, image sizes and channels
agree with the metadata; label indices lie in [0, output_dim); the `.solution` (when present)
has one 0/1 row per test record and `output_dim` columns. Exit status 0 when valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from metadata.errors import AutoDLDataError, SampleCountError, SolutionError

__all__ = ["SplitReport", "DatasetReport", "find_dataset", "read_solution", "check_dataset", "main"]


@dataclass
class SplitReport:
    count: int = 0
    frames: set[int] = field(default_factory=set)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    label_counts: np.ndarray | None = None
    multilabel: bool = False


@dataclass
class DatasetReport:
    name: str
    data_dir: str
    shape: tuple[int, int, int, int]
    output_dim: int
    fmt: str
    splits: dict[str, SplitReport]
    solution_path: str | None
    solution_counts: np.ndarray | None


def find_dataset(path: str) -> tuple[str, str]:
    """(name, `<name>.data` folder) for a dataset folder or a `.data` folder."""
    path = os.path.abspath(path)
    if path.endswith(".data") and os.path.isdir(path):
        return os.path.basename(path)[:-5], path
    if not os.path.isdir(path):
        raise AutoDLDataError(f"{path}: not a folder")
    found = glob.glob(os.path.join(path, "*.data"))
    if len(found) != 1:
        raise AutoDLDataError(f"{path}: expected exactly one '<name>.data' folder, found {len(found)}")
    return os.path.basename(found[0])[:-5], found[0]


def read_solution(path: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load a `.solution` file as an int array `[N, K]` of 0/1.

    Raises:
        SolutionError: unreadable, not 0/1, or not of `shape` (rows, columns), naming the file.
    """
    try:
        y = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise SolutionError(f"{path}: cannot read solution ({exc})") from exc
    if shape is not None and y.shape != tuple(shape):
        raise SolutionError(f"{path}: solution has {y.shape[0]} rows x {y.shape[1]} columns, "
                            f"expected {shape[0]} rows (test records) x {shape[1]} columns (output_dim)")
    if not np.isin(y, (0, 1)).all():
        raise SolutionError(f"{path}: solution values must be 0 or 1")
    return y.astype(np.int64)


def _check_split(split_dir: str) -> tuple[SplitReport, object]:
    import tensorflow as tf

    from metadata.arrays import record_error
    from metadata.reader import AutoDLDataset

    dataset = AutoDLDataset(split_dir)
    meta = dataset.get_metadata()
    seq, row, col, channels = meta.get_tensor_shape()
    report = SplitReport(label_counts=np.zeros(meta.get_output_size(), dtype=np.int64))
    if meta.is_sparse():
        ds = dataset.get_dataset().map(lambda x, y: (tf.shape(x), y))
    else:
        ds = dataset.uint8_dataset().map(lambda x, y: (tf.shape(x), y))
    try:
        for shape, labels in ds.as_numpy_iterator():
            report.count += 1
            if not meta.is_sparse():
                report.frames.add(int(shape[0]))
                report.sizes.add((int(shape[1]), int(shape[2])))
                if int(shape[3]) != channels:
                    raise AutoDLDataError(f"{split_dir}: record {report.count - 1} has {shape[3]} channels, "
                                          f"metadata says {channels}")
            positives = labels > 0
            report.label_counts += positives
            report.multilabel |= bool(positives.sum() > 1)
    except tf.errors.OpError as exc:
        raise record_error(dataset, exc) from exc
    if report.count != meta.size():
        raise SampleCountError(f"{os.path.join(split_dir, 'metadata.textproto')}: sample_count is "
                               f"{meta.size()}, but the records hold {report.count} samples")
    if not meta.is_sparse():
        # uint8_dataset pads/cuts to sequence_size; count the stored frames separately.
        stored = _stored_frame_counts(dataset)
        if seq > 0 and stored - {seq}:
            raise AutoDLDataError(f"{split_dir}: records hold {sorted(stored)} frames, metadata "
                                  f"sequence_size is {seq}")
        report.frames = stored
        for dim, name, index in ((row, "row_count", 0), (col, "col_count", 1)):
            values = {s[index] for s in report.sizes}
            if dim > 0 and values - {dim}:
                raise AutoDLDataError(f"{split_dir}: images have {name} {sorted(values)}, metadata says {dim}")
    return report, meta


def _stored_frame_counts(dataset: object) -> set[int]:
    import tensorflow as tf

    meta = dataset.get_metadata()
    key = "0_compressed" if meta.is_compressed() else "0_dense_input"
    spec = ({key: tf.io.VarLenFeature(tf.string)} if meta.is_compressed()
            else {key: tf.io.FixedLenSequenceFeature(meta.get_tensor_size(), tf.float32)})

    def frames(r: tf.Tensor) -> tf.Tensor:
        f = tf.io.parse_single_sequence_example(r, sequence_features=spec)[1][key]
        return tf.shape(f.values)[0] if meta.is_compressed() else tf.shape(f)[0]

    return {int(n) for n in dataset.record_dataset().map(frames).as_numpy_iterator()}


def check_dataset(path: str) -> DatasetReport:
    """Validate the dataset at `path`; raise the first problem found (an AutoDLDataError)."""
    name, data_dir = find_dataset(path)
    splits = {}
    metas = {}
    for split in ("train", "test"):
        split_dir = os.path.join(data_dir, split)
        if not os.path.isdir(split_dir):
            raise AutoDLDataError(f"{split_dir}: split folder missing")
        splits[split], metas[split] = _check_split(split_dir)
    train_meta, test_meta = metas["train"], metas["test"]
    for getter in ("get_output_size", "get_tensor_shape"):
        a, b = getattr(train_meta, getter)(), getattr(test_meta, getter)()
        if a != b:
            raise AutoDLDataError(f"{data_dir}: train and test metadata disagree on {getter}(): {a} vs {b}")
    if splits["test"].label_counts.sum() > 0:
        raise AutoDLDataError(f"{data_dir}/test: test records carry labels (they must be all zero)")
    solution_path = os.path.join(os.path.dirname(data_dir), f"{name}.solution")
    solution_counts = None
    if os.path.exists(solution_path):
        solution = read_solution(solution_path, (splits["test"].count, test_meta.get_output_size()))
        solution_counts = solution.sum(0)
    else:
        solution_path = None
    fmt = "SPARSE" if train_meta.is_sparse() else "COMPRESSED" if train_meta.is_compressed() else "DENSE"
    return DatasetReport(name=name, data_dir=data_dir, shape=train_meta.get_tensor_shape(),
                         output_dim=train_meta.get_output_size(), fmt=fmt, splits=splits,
                         solution_path=solution_path, solution_counts=solution_counts)


def format_report(report: DatasetReport) -> str:
    def span(values: set) -> str:
        values = sorted(values)
        return "-" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}..{values[-1]}"

    lines = [f"dataset   {report.name}  ({report.data_dir})",
             f"format    {report.fmt}, tensor shape (T,H,W,C) = {report.shape}, {report.output_dim} classes"]
    for split, r in report.splits.items():
        heights = {s[0] for s in r.sizes}
        widths = {s[1] for s in r.sizes}
        lines.append(f"{split:<9} {r.count} samples, frames {span(r.frames)}, height {span(heights)}, "
                     f"width {span(widths)}" + (", multilabel" if r.multilabel else ""))
    train_counts = report.splits["train"].label_counts
    lines.append(f"train labels per class: min {train_counts.min()}, max {train_counts.max()}, "
                 f"classes without samples: {int((train_counts == 0).sum())}")
    if report.solution_counts is not None:
        valid = int(((report.solution_counts > 0) & (report.solution_counts < report.splits['test'].count)).sum())
        lines.append(f"solution  {report.solution_path}: {report.splits['test'].count} rows, "
                     f"{valid} of {report.output_dim} columns scoreable")
    else:
        lines.append("solution  none (the test split cannot be scored locally)")
    lines.append("OK")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metadata.check", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="dataset folder (holding <name>.data) or the .data folder")
    args = parser.parse_args(argv)
    try:
        report = check_dataset(args.dataset)
    except AutoDLDataError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
