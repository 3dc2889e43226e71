"""Read an AutoDL split as a `tf.data.Dataset`, exactly as the official ingestion program does.

`AutoDLDataset(split_dir).get_dataset()` yields `(example, labels)`: `example` float32
`[T, H, W, C]` in [0, 1] (COMPRESSED) or as stored (DENSE), `labels` float32 `[output_dim]`. Shards,
interleaving, parsing (one `map` without `num_parallel_calls`: sequential, as the kit's; tf.data's default
rewrites parallelize it unless a read turns them off), decoding, static shapes and label densification follow
the final AutoDL kit (`dataset.py`), with TF2 names. One deliberate difference: images are decoded with
`expand_animations=False`, so a GIF yields its first frame instead of a rank-5 tensor that breaks
the declared shape.

The same object also offers `uint8_dataset()`, a faster path for training code that decodes
straight to uint8 (see `metadata.arrays`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from metadata.errors import AutoDLDataError, RecordError
from metadata.spec import AutoDLMetadata

__all__ = ["AutoDLDataset", "frame_positions", "keep_frames", "list_record_files", "records_dataset", "iter_raw_records",
           "locate_bad_record"]

AUTOTUNE = tf.data.AUTOTUNE


def list_record_files(split_dir: str) -> list[str]:
    """The shard files of a split, as the official reader finds them (`<split_dir>/sample*`)."""
    pattern = os.path.join(split_dir, "sample*")
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise AutoDLDataError(f"{split_dir}: no TFRecord files (pattern {pattern!r} matched nothing)")
    return files


def records_dataset(files: list[str], num_parallel_readers: int = 3) -> tf.data.Dataset:
    """Serialized records of `files` in the official read order (shards interleaved by 3)."""
    if len(files) > 1:
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=num_parallel_readers, num_parallel_calls=AUTOTUNE)
    return tf.data.TFRecordDataset(files, num_parallel_reads=num_parallel_readers)


def frame_positions(t: tf.Tensor | int, k: int) -> tf.Tensor | np.ndarray:
    """Indices of min(t, k) frames evenly spaced over a clip of t frames, the first and the last included: the
    frames `learner.video.sample_frame_indices(t, k, "uniform")` picks; all t when t <= k. A known length
    (an int) gives int32 numpy constants (cheaper to trace in a `tf.data` function), a tensor a tensor."""
    if isinstance(t, (int, np.integer)):
        return np.round(np.linspace(0, t - 1, min(t, k))).astype(np.int32)
    t = tf.cast(t, tf.int32)
    return tf.cast(tf.round(tf.linspace(tf.constant(0.0, tf.float64), tf.cast(t - 1, tf.float64),
                                        tf.minimum(t, k))), tf.int32)


def keep_frames(x: tf.Tensor, k: int | None) -> tf.Tensor:
    """`x` (`[T, H, W, C]`, or batched `[B, T, H, W, C]`) with at most `k` evenly spaced frames (None: all).
    A static length needs no op when it is at most `k`, else a constant gather (tracing the general ops cost
    every decode about 0.15 s)."""
    axis = x.shape.rank - 4
    t = x.shape[axis]
    if not k or (t is not None and t <= k):
        return x
    return tf.gather(x, frame_positions(t if t is not None else tf.shape(x)[axis], k), axis=axis)


class AutoDLDataset:
    """One split (`<name>.data/train` or `/test`) of an AutoDL dataset.

    Args:
        dataset_name: the split folder (it holds `metadata.textproto` and `sample*` shards).
        num_parallel_readers: as the official reader (3): shard interleave cycle length.

    Raises:
        MetadataError: bad or missing metadata (names the file and field).
        AutoDLDataError: no shard files in the folder.
    """

    def __init__(self, dataset_name: str, num_parallel_readers: int = 3):
        self.dataset_name_ = dataset_name
        self.num_parallel_readers = num_parallel_readers
        self.metadata_ = AutoDLMetadata(dataset_name)
        self.files = list_record_files(dataset_name)
        self.dataset_ = self.record_dataset().map(self._parse_function)  # sequential, as the official reader

    def get_dataset(self) -> tf.data.Dataset:
        """The `tf.data.Dataset` of `(example, labels)` the platform hands to `Model.train/test`."""
        return self.dataset_

    def get_metadata(self) -> AutoDLMetadata:
        return self.metadata_

    def record_dataset(self) -> tf.data.Dataset:
        """Serialized records in the official read order."""
        return records_dataset(self.files, self.num_parallel_readers)

    # -- parsing ---------------------------------------------------------------------------------
    def _feature_spec(self) -> dict[str, tf.io.VarLenFeature | tf.io.FixedLenSequenceFeature]:
        meta = self.metadata_
        features: dict[str, tf.io.VarLenFeature | tf.io.FixedLenSequenceFeature] = {}
        for i in range(meta.get_bundle_size()):
            if meta.is_sparse(i):
                for kind in ("sparse_col_index", "sparse_row_index", "sparse_channel_index"):
                    features[f"{i}_{kind}"] = tf.io.VarLenFeature(tf.int64)
                features[f"{i}_sparse_value"] = tf.io.VarLenFeature(tf.float32)
            elif meta.is_compressed(i):
                features[f"{i}_compressed"] = tf.io.VarLenFeature(tf.string)
            else:
                features[f"{i}_dense_input"] = tf.io.FixedLenSequenceFeature(
                    meta.get_tensor_size(i), dtype=tf.float32)
        return features

    def _parse(self, proto: tf.Tensor) -> tuple[dict, dict]:
        return tf.io.parse_single_sequence_example(
            proto,
            context_features={
                "label_index": tf.io.VarLenFeature(tf.int64),
                "label_score": tf.io.VarLenFeature(tf.float32),
            },
            sequence_features=self._feature_spec())

    def _labels(self, contexts: dict) -> tf.Tensor:
        indices = tf.reshape(contexts["label_index"].values, [-1, 1])
        sparse = tf.sparse.SparseTensor(indices=indices, values=contexts["label_score"].values,
                                        dense_shape=(self.metadata_.get_output_size(),))
        return tf.sparse.to_dense(sparse, validate_indices=False)

    def _parse_function(self, sequence_example_proto: tf.Tensor) -> list[tf.Tensor]:
        meta = self.metadata_
        contexts, features = self._parse(sequence_example_proto)
        sample = []
        for i in range(meta.get_bundle_size()):
            row_count, col_count = meta.get_matrix_size(i)
            num_channels = meta.get_num_channels(i)
            sequence_size = meta.get_sequence_size()
            row = row_count if row_count > 0 else None
            col = col_count if col_count > 0 else None
            if f"{i}_dense_input" in features:
                dense = features[f"{i}_dense_input"]
                sample.append(tf.reshape(dense, [sequence_size, row, col, num_channels]))
            seq = sequence_size if sequence_size > 0 else None
            if f"{i}_compressed" in features:
                def decode(x: tf.Tensor, c: int = num_channels) -> tf.Tensor:
                    image = tf.image.decode_image(x, channels=c, expand_animations=False)
                    image = tf.image.convert_image_dtype(image, dtype=tf.float32)
                    image.set_shape([None, None, c])
                    return image
                images = tf.map_fn(decode, features[f"{i}_compressed"].values,
                                   fn_output_signature=tf.float32)
                images.set_shape([seq, row, col, num_channels])
                sample.append(images)
            if f"{i}_sparse_value" in features:
                sparse_col = features[f"{i}_sparse_col_index"].values
                sparse_channel = features[f"{i}_sparse_channel_index"].values
                sparse_val = features[f"{i}_sparse_value"].values
                if col_count > num_channels:  # tabular: rows of (column index, value)
                    tensor = tf.concat([tf.reshape(tf.cast(sparse_col, tf.float32), [-1, 1]),
                                        tf.reshape(sparse_val, [-1, 1])], 1)
                    tensor = tf.reshape(tensor, [1, -1, 2, 1])
                else:  # text: a sequence of token (channel) indices
                    tensor = tf.cast(tf.reshape(sparse_channel, [-1, 1, 1, 1]), tf.float32)
                sample.append(tensor)
        sample.append(self._labels(contexts))
        return sample

    # -- fast path -------------------------------------------------------------------------------
    def uint8_dataset(self, size: tuple[int, int] | None = None, *, antialias: bool = True,
                      frames: int | None = None, skip: int = 0) -> tf.data.Dataset:
        """`(uint8 [T, H, W, C], float32 labels)`, decoding straight to uint8.

        Skips the float round trip of `get_dataset()`; with `size` every frame is resized
        (bilinear). The sequence is padded with zero frames or cut to `sequence_size`, the
        semantics `data.proto` documents; with `frames`, at most that many evenly spaced frames of
        it are kept (`frame_positions`), and only those are decoded; the first `skip` records are
        passed over undecoded. Only for bundle 0 of COMPRESSED or DENSE data.
        """
        meta = self.metadata_
        if meta.is_sparse(0):
            raise AutoDLDataError(f"{self.dataset_name_}: uint8 decoding does not apply to SPARSE data")
        channels = meta.get_num_channels(0)
        seq = meta.get_sequence_size()
        row, col = meta.get_matrix_size(0)

        def parse(proto: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            contexts, features = self._parse(proto)
            if meta.is_compressed(0):
                def decode(x: tf.Tensor) -> tf.Tensor:
                    image = tf.image.decode_image(x, channels=channels, expand_animations=False)
                    image.set_shape([None, None, channels])
                    if size is not None:
                        image = tf.image.resize(image, size, antialias=antialias)
                        image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
                    return image
                encoded = features["0_compressed"].values
                if seq > 0:  # the frames the sequence keeps (cut to seq; positions past the record's are padding)
                    encoded = encoded[:seq]
                kept = None
                if frames and not 0 < seq <= frames:
                    positions = tf.constant(frame_positions(seq, frames)) if seq > 0 else frame_positions(
                        tf.shape(encoded)[0], frames)  # a constant when the length is known (cheaper to trace)
                    kept = tf.size(positions)
                    encoded = tf.gather(encoded, positions[positions < tf.shape(encoded)[0]])  # ascending
                frame_array = tf.map_fn(decode, encoded, fn_output_signature=tf.uint8)
                if kept is not None:  # padding frames among the kept positions: zeros, at the end
                    frame_array = tf.pad(frame_array, [[0, kept - tf.shape(frame_array)[0]], [0, 0], [0, 0], [0, 0]])
            else:
                dense = tf.reshape(features["0_dense_input"], [-1, row, col, channels])
                if seq > 0:
                    dense = dense[:seq]
                    dense = tf.pad(dense, [[0, tf.maximum(seq - tf.shape(dense)[0], 0)], [0, 0], [0, 0], [0, 0]])
                    dense.set_shape([seq, row, col, channels])
                dense = keep_frames(dense, frames)
                if size is not None:
                    dense = tf.image.resize(dense, size, antialias=antialias)
                frame_array = tf.cast(tf.round(tf.clip_by_value(dense, 0.0, 1.0) * 255.0), tf.uint8)
            if seq > 0 and not (frames and seq > frames):  # not gathered (which pads): pad or cut to seq
                pad = tf.maximum(seq - tf.shape(frame_array)[0], 0)
                frame_array = tf.pad(frame_array, [[0, pad], [0, 0], [0, 0], [0, 0]])[:seq]
            length = (min(seq, frames) if frames else seq) if seq > 0 else None
            h, w = size if size is not None else (row if row > 0 else None, col if col > 0 else None)
            frame_array.set_shape([length, h, w, channels])
            return frame_array, self._labels(contexts)

        return self.record_dataset().skip(skip).map(parse, num_parallel_calls=AUTOTUNE)

    def labels(self) -> np.ndarray:
        """float32 `[N, output_dim]` labels in read order, parsed without decoding any image."""
        ds = self.record_dataset().map(lambda p: self._labels(self._parse(p)[0]), num_parallel_calls=AUTOTUNE)
        batches = [b for b in ds.batch(4096).as_numpy_iterator()]
        k = self.metadata_.get_output_size()
        return np.concatenate(batches).astype(np.float32) if batches else np.zeros((0, k), np.float32)

    def __repr__(self) -> str:
        return f"AutoDLDataset({self.dataset_name_!r}, files={len(self.files)})"


def iter_raw_records(path: str) -> Iterator[bytes]:
    """Serialized records of one TFRecord file, in file order.

    Raises:
        RecordError: a truncated or corrupt record, naming the file and the record index.
    """
    index = 0
    iterator = iter(tf.data.TFRecordDataset([path]))
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise RecordError(f"{path}: record {index} is truncated or corrupt ({exc.message})",
                              path=path, index=index) from exc
        yield record.numpy()
        index += 1


def locate_bad_record(dataset: AutoDLDataset) -> RecordError | None:
    """Find the first record of `dataset` that cannot be read, parsed or decoded.

    Slow (one record at a time): only called after a batched read failed, to name the culprit.
    """
    parse = tf.function(dataset._parse_function)
    for path in dataset.files:
        index = -1
        try:
            for index, record in enumerate(iter_raw_records(path)):
                try:
                    parse(tf.constant(record))
                except (tf.errors.OpError, ValueError) as exc:
                    message = getattr(exc, "message", str(exc)).strip().splitlines()[0]
                    return RecordError(f"{path}: record {index} does not parse or decode ({message})",
                                       path=path, index=index)
        except RecordError as exc:
            return exc
    return None
