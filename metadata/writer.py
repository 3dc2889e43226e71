"""Write AutoDL datasets in the exact on-disk layout of the AutoDL kit (protocol §4).

```
<out_dir>/<name>.data/{train,test}/metadata.textproto, sample-<name>-<split>.tfrecord
<out_dir>/<name>.solution        test labels, one 0/1 row per test record, in read order
<out_dir>/<name>_label.name      class names in index order
<out_dir>/<name>_public.info     domain / sample_num / label_num
```
Encoded JPEG/PNG/GIF/BMP bytes are stored as they are; other formats and raw arrays are
encoded as PNG (lossless). Test ids are 0..N-1, train ids follow. The dataset is built in a
temporary folder and moved into place, so a failed conversion leaves nothing half-written.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from metadata.errors import DatasetExistsError, SourceError
from metadata.spec import METADATA_FILENAME, DataSpecification, MatrixSpec, metadata_to_text

__all__ = ["Example", "SplitSummary", "DatasetSummary", "write_dataset", "write_solution",
           "encode_frame", "inspect_image"]

logger = logging.getLogger(__name__)

FORMATS = ("compressed", "dense")
_KEEP_AS_IS = {"JPEG", "PNG", "GIF", "BMP"}  # what tf.image.decode_image reads
_ONE_CHANNEL_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class Example:
    """One sample to write.

    Attributes:
        frames: encoded image bytes, one per frame; or an array `[H, W]`, `[H, W, C]` or
            `[T, H, W, C]` (uint8 0..255, or float in [0, 1]).
        labels: indices of the positive classes (one for multiclass, any number for multilabel).
        source: where the sample came from, for error messages.
    """

    frames: Sequence[bytes] | np.ndarray
    labels: tuple[int, ...]
    source: str = ""


@dataclass
class SplitSummary:
    count: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    channels: set[int] = field(default_factory=set)
    lengths: set[int] = field(default_factory=set)
    label_counts: np.ndarray | None = None


@dataclass(frozen=True)
class DatasetSummary:
    path: str
    name: str
    train: SplitSummary
    test: SplitSummary
    output_dim: int


def inspect_image(data: bytes, source: str) -> tuple[bytes, tuple[int, int], int]:
    """Check that `data` decodes; return (bytes to store, (height, width), channels 1 or 3).

    Formats TensorFlow cannot decode (TIFF, WebP, PPM, ...) and JPEGs in CMYK are re-encoded as
    PNG; everything else is returned unchanged.

    Raises:
        SourceError: the image does not decode, naming `source`.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            fmt, mode, (width, height) = image.format, image.mode, image.size
            channels = 1 if mode in _ONE_CHANNEL_MODES else 3
            if fmt not in _KEEP_AS_IS or (fmt == "JPEG" and mode not in ("L", "RGB")):
                converted = image.convert("L" if channels == 1 else "RGB")
                buffer = io.BytesIO()
                converted.save(buffer, format="PNG")
                data = buffer.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"{source}: image does not decode ({exc})") from exc
    return data, (height, width), channels


def _as_frames_array(array: np.ndarray, source: str) -> np.ndarray:
    """Normalise an example array to uint8 `[T, H, W, C]`."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None, :, :, None]
    elif a.ndim == 3:
        a = a[None]
    elif a.ndim != 4:
        raise SourceError(f"{source}: expected [H,W], [H,W,C] or [T,H,W,C], got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise SourceError(f"{source}: array holds NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            raise SourceError(f"{source}: float pixel values must lie in [0, 1] "
                              f"(got {a.min():g}..{a.max():g}); pass uint8 for 0..255 data")
        a = np.round(a * 255.0).astype(np.uint8)
    if a.shape[-1] not in (1, 3):
        raise SourceError(f"{source}: images need 1 or 3 channels, got {a.shape[-1]}")
    return a


def encode_frame(frame: np.ndarray) -> bytes:
    """PNG-encode a uint8 `[H, W, C]` frame (C = 1 or 3)."""
    image = Image.fromarray(frame[:, :, 0] if frame.shape[-1] == 1 else frame)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _SplitWriter:
    """Writes one split's shards and collects what the metadata must declare."""

    def __init__(self, split_dir: str, name: str, split: str, *, fmt: str, output_dim: int,
                 shards: int, with_labels: bool, first_id: int):
        import tensorflow as tf  # deferred: converters that fail early need no TensorFlow

        self._tf = tf
        os.makedirs(split_dir, exist_ok=True)
        if shards == 1:
            self.paths = [os.path.join(split_dir, f"sample-{name}-{split}.tfrecord")]
        else:
            self.paths = [os.path.join(split_dir, f"sample-{name}-{split}-{i:05d}-of-{shards:05d}.tfrecord")
                          for i in range(shards)]
        self._writers = [tf.io.TFRecordWriter(p) for p in self.paths]
        self.fmt, self.output_dim, self.with_labels = fmt, output_dim, with_labels
        self.next_id = first_id
        self.summary = SplitSummary(label_counts=np.zeros(output_dim, dtype=np.int64))
        self.labels_by_id: dict[int, tuple[int, ...]] = {}

    def _frames(self, example: Example) -> tuple[list[bytes] | np.ndarray, list[tuple[int, int]], list[int]]:
        if isinstance(example.frames, np.ndarray):
            a = _as_frames_array(example.frames, example.source)
            sizes = [a.shape[1:3]] * len(a)
            channels = [a.shape[3]] * len(a)
            if self.fmt == "compressed":
                return [encode_frame(f) for f in a], sizes, channels
            return a, sizes, channels
        encoded, sizes, channels = [], [], []
        for k, data in enumerate(example.frames):
            where = example.source if len(example.frames) == 1 else f"{example.source} (frame {k})"
            data, size, c = inspect_image(bytes(data), where)
            encoded.append(data)
            sizes.append(size)
            channels.append(c)
        if self.fmt == "dense":
            return _decode_for_dense(encoded, channels, example.source), sizes, channels
        return encoded, sizes, channels

    def write(self, example: Example) -> None:
        tf = self._tf
        labels = tuple(int(k) for k in example.labels)
        for k in labels:
            if not 0 <= k < self.output_dim:
                raise SourceError(f"{example.source}: label {k} outside [0, {self.output_dim})")
        frames, sizes, channels = self._frames(example)
        if not sizes:
            raise SourceError(f"{example.source}: sample has no frames")
        if len(set(sizes)) > 1:
            raise SourceError(f"{example.source}: frames of one sample differ in size: {sorted(set(sizes))}")
        s = self.summary
        s.sizes.add(sizes[0])
        s.channels.update(channels)
        s.lengths.add(len(sizes))
        context = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[self.next_id]))}
        if self.with_labels:
            context["label_index"] = tf.train.Feature(int64_list=tf.train.Int64List(value=sorted(set(labels))))
            context["label_score"] = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * len(set(labels))))
        else:  # test records carry no labels, as in the official sample data
            context["label_index"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[]))
            context["label_score"] = tf.train.Feature(float_list=tf.train.FloatList(value=[]))
        if self.fmt == "compressed":
            feature = [tf.train.Feature(bytes_list=tf.train.BytesList(value=[f])) for f in frames]
            key = "0_compressed"
        else:
            feature = [tf.train.Feature(float_list=tf.train.FloatList(value=(f.astype(np.float32) / 255.0).ravel()))
                       for f in frames]
            key = "0_dense_input"
        record = tf.train.SequenceExample(
            context=tf.train.Features(feature=context),
            feature_lists=tf.train.FeatureLists(feature_list={key: tf.train.FeatureList(feature=feature)}))
        self._writers[s.count % len(self._writers)].write(record.SerializeToString())
        self.labels_by_id[self.next_id] = labels
        np.add.at(s.label_counts, list(set(labels)), 1)
        s.count += 1
        self.next_id += 1

    def close(self) -> None:
        for w in self._writers:
            w.close()


def _decode_for_dense(encoded: list[bytes], channels: list[int], source: str) -> np.ndarray:
    c = max(channels)
    out = []
    for data in encoded:
        with Image.open(io.BytesIO(data)) as image:
            out.append(np.asarray(image.convert("L" if c == 1 else "RGB")).reshape(image.size[1], image.size[0], c))
    return np.stack(out)


def _spec(summary: SplitSummary, *, fmt: str, output_dim: int, label_names: Sequence[str] | None,
          split_dir: str) -> DataSpecification:
    if len(summary.lengths) > 1:
        raise SourceError(f"{split_dir}: samples have different numbers of frames "
                          f"{sorted(summary.lengths)}; resample them to one length first")
    spec = DataSpecification()
    spec.sample_count = summary.count
    length = next(iter(summary.lengths), 1)
    spec.is_sequence = length > 1
    spec.sequence_size = length
    spec.output_dim = output_dim
    m = spec.matrix_spec.add()
    if len(summary.sizes) == 1:
        m.row_count, m.col_count = next(iter(summary.sizes))
    else:
        if fmt == "dense":
            raise SourceError(f"{split_dir}: DENSE data needs one image size, found {len(summary.sizes)} "
                              "different sizes; use the compressed format or resize first")
        m.row_count = m.col_count = -1
    m.num_channels = 1 if summary.channels <= {1} else 3
    m.is_sequence_col = m.is_sequence_row = False
    m.has_locality_col = m.has_locality_row = True
    m.format = MatrixSpec.COMPRESSED if fmt == "compressed" else MatrixSpec.DENSE
    for index, label in enumerate(label_names or []):
        spec.label_to_index_map[label] = index
    return spec


def _read_ids_in_official_order(split_dir: str) -> list[int]:
    """Record ids in the order the official reader yields them (shards are interleaved)."""
    import tensorflow as tf

    from metadata.reader import list_record_files, records_dataset

    ds = records_dataset(list_record_files(split_dir), 3).map(
        lambda r: tf.io.parse_single_sequence_example(
            r, context_features={"id": tf.io.FixedLenFeature([], tf.int64)})[0]["id"])
    return [int(i) for i in ds.as_numpy_iterator()]


def write_solution(path: str, labels: Sequence[Sequence[int]], output_dim: int) -> None:
    """Write a `.solution` file: one row of K space-separated 0/1 integers per test sample."""
    with open(path, "w", encoding="ascii") as f:
        for row in labels:
            dense = np.zeros(output_dim, dtype=np.int64)
            dense[list(row)] = 1
            f.write(" ".join(str(v) for v in dense) + "\n")


def write_dataset(out_dir: str, name: str, train: Iterable[Example], test: Iterable[Example], *,
                  output_dim: int, label_names: Sequence[str] | None = None, fmt: str = "compressed",
                  shards: int = 1, overwrite: bool = False, progress: bool = True,
                  total: tuple[int | None, int | None] = (None, None)) -> DatasetSummary:
    """Write a complete AutoDL dataset folder.

    Args:
        out_dir: the dataset folder to create (it will hold `<name>.data/` and `<name>.solution`).
        name: the dataset (task) name.
        train, test: the examples; train is written in the order given (shuffle beforehand).
        output_dim: number of classes.
        label_names: class names in index order (optional).
        fmt: "compressed" (encoded images) or "dense" (float32 values in [0, 1]).
        shards: TFRecord files per split.
        overwrite: replace an existing `out_dir`; otherwise it must not exist (or be empty).
        progress: show a progress bar.
        total: expected (train, test) counts, only for the progress bar.

    Raises:
        DatasetExistsError: `out_dir` exists and `overwrite` is False.
        SourceError: an example is invalid (names its source).
    """
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"invalid dataset name {name!r}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if label_names is not None and len(label_names) != output_dim:
        raise ValueError(f"{len(label_names)} label names for output_dim={output_dim}")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise DatasetExistsError(f"{out_dir}: already exists; pass overwrite=True (--overwrite) to replace it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is an ordinary folder
    try:
        summaries = {}
        next_id = 0
        for split, examples, n in (("test", test, total[1]), ("train", train, total[0])):
            split_dir = os.path.join(tmp, f"{name}.data", split)
            writer = _SplitWriter(split_dir, name, split, fmt=fmt, output_dim=output_dim, shards=shards,
                                  with_labels=(split == "train"), first_id=next_id)
            try:
                for example in tqdm(examples, total=n, desc=f"{name}/{split}", unit="sample",
                                    disable=not progress, leave=False):
                    writer.write(example)
            finally:
                writer.close()
            if writer.summary.count == 0:
                raise SourceError(f"{name}: the {split} split has no samples")
            spec = _spec(writer.summary, fmt=fmt, output_dim=output_dim, label_names=label_names,
                         split_dir=split_dir)
            with open(os.path.join(split_dir, METADATA_FILENAME), "w", encoding="utf-8") as f:
                f.write(metadata_to_text(spec))
            if split == "test":
                order = _read_ids_in_official_order(split_dir) if shards > 1 else sorted(writer.labels_by_id)
                write_solution(os.path.join(tmp, f"{name}.solution"),
                               [writer.labels_by_id[i] for i in order], output_dim)
            summaries[split] = writer.summary
            next_id = writer.next_id
        if label_names is not None:
            with open(os.path.join(tmp, f"{name}_label.name"), "w", encoding="utf-8") as f:
                f.write("".join(f"{label}\n" for label in label_names))
        length = next(iter(summaries["train"].lengths), 1)
        with open(os.path.join(tmp, f"{name}_public.info"), "w", encoding="utf-8") as f:
            f.write(f"domain : {'video' if length > 1 else 'image'}\n"
                    f"sample_num : {summaries['train'].count + summaries['test'].count}\n"
                    f"label_num : {output_dim}\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DatasetSummary(path=out_dir, name=name, train=summaries["train"], test=summaries["test"],
                          output_dim=output_dim)
