"""Fast path from an AutoDL dataset to numpy arrays for training code.

`to_arrays` decodes (and optionally resizes) in `tf.data` with parallel calls and batches into
uint8 `[N, T, H, W, C]`. It accepts our `AutoDLDataset` (decoded straight to uint8, faster), the
official kit's dataset object (anything with `get_dataset()`), or a bare `tf.data.Dataset` of
`(example, labels)`, the object the platform hands to `Model.train/test`. Only public tf.data
behaviour is used, so the platform's objects work unchanged.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from metadata.errors import RecordError, SampleCountError
from metadata.reader import AutoDLDataset, keep_frames, locate_bad_record

__all__ = ["Arrays", "to_arrays", "read_on", "as_tf_dataset", "max_side", "uint8_batches", "record_error",
           "DECODE_BATCH_BYTES"]

logger = logging.getLogger(__name__)

# Decoded input per conversion batch: 64 clips of 181 frames of 120x160 px are 890 MB of float32, which the
# pipeline's parallel calls and prefetching hold several times over (6 GB for 100 such clips); images still
# come 64 at a time.
DECODE_BATCH_BYTES = 64 * 1024**2


def _bounded_batch(shape: tf.TensorShape, itemsize: int, batch_size: int) -> int:
    """`batch_size`, lowered so that a batch of samples of `shape` holds at most `DECODE_BATCH_BYTES`."""
    if not shape.is_fully_defined():
        return batch_size
    per_sample = int(np.prod(shape.as_list())) * itemsize
    return max(1, min(batch_size, DECODE_BATCH_BYTES // max(per_sample, 1)))


@dataclass
class Arrays:
    """Decoded samples.

    Attributes:
        x: uint8 `[N, T, H, W, C]` (float32 when asked), in dataset order.
        y: float32 `[N, K]` labels (all zeros for a test split).
        complete: False when `max_samples` or `max_bytes` stopped reading before the end.
        out_of_range: samples whose values fell outside [0, 1] and were clipped for uint8
            (DENSE data stored on another scale; ask for float32 to keep it).
        rest: when reading stopped before the end, the samples after those kept, in dataset order, a batch at
            a time (`(x, y)` as above): reading goes on where it stopped, so nothing is decoded twice (a platform
            dataset has no random access: skipping samples decodes them).
        native_side: the largest height or width of a frame before resizing among the samples decoded (0: not
            measured, our `AutoDLDataset` of images of varying size): a caller that chose the size without looking
            learns the images' own size from the read itself, not from a second decode.
    """

    x: np.ndarray
    y: np.ndarray
    complete: bool
    out_of_range: int = 0
    rest: Iterator[tuple[np.ndarray, np.ndarray]] | None = None
    native_side: int = 0

    def __len__(self) -> int:
        return len(self.x)


def as_tf_dataset(source: Any) -> tf.data.Dataset:
    """The `tf.data.Dataset` behind `source` (a dataset object with `get_dataset()`, or itself)."""
    if isinstance(source, tf.data.Dataset):
        return source
    if hasattr(source, "get_dataset"):
        return source.get_dataset()
    raise TypeError(f"expected a tf.data.Dataset or an AutoDL dataset object, got {type(source).__name__}")


def _read_options() -> tf.data.Options:
    """`tf.data` options of every read here: of tf.data's default graph rewrites only `map_parallelization`, which
    runs the platform's sequential parse map (the kit's `map(_parse_function)`) on every core; each rewrite costs
    every new iterator a fixed time (about 0.01-0.06 s on this machine), and the others bought nothing measurable.
    `benchmarks/first_read.py` at 64 px, medians of 5 (session 21), these / tf.data's defaults / no rewrites
    (session 20's reads): 10,000 test images 3.61 / 3.31 / 5.19 s, antsbees' 245 training images 0.38 / 0.39 /
    0.68 s, Monkeys' 4 test images 0.15 / 0.15 / 0.09 s."""
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_optimization.map_parallelization = True
    return options


def max_side(source: Any, max_samples: int, max_seconds: float | None = None, enough: int | None = None) -> int:
    """The largest height or width of a frame among the first `max_samples` samples (0: none): the static
    shape when the dataset declares one, else read (decoded, not resized; once a side of at least `enough` is
    seen, the samples after it do not count: a caller that caps the side there learns nothing more). For
    choosing a storage side before anything is decoded at it.

    Read in two single ops, never through a Python iterator (creating one over the platform's dataset costs
    0.05-0.1 s here, more than the first answer's pixel model on a small set): the first sample by
    `get_single_element` (nothing traced: about 0.01 s), which settles large images; then, unless `enough` is
    reached, the sides of the samples after it, batched into one tensor (one small traced function; hoda's 64
    digits 0.04-0.05 s against 0.09 s iterated). With `max_seconds`, the second read takes only as many samples
    as are expected, at the first one's rate, to fit in the time left.

    Raises:
        RecordError: a record that cannot be read or decoded.
    """
    ds = as_tf_dataset(source)
    shape = ds.element_spec[0].shape
    if shape.rank is not None and shape.rank >= 3 and shape[-3] is not None and shape[-2] is not None:
        return max(int(shape[-3]), int(shape[-2]))
    if max_samples < 1:
        return 0
    goal = enough if enough is not None else np.iinfo(np.int32).max
    start = time.time()
    try:
        first = ds.take(1).get_single_element()  # one op, nothing traced
    except (tf.errors.OpError, ValueError):
        return _max_side_iterating(source, max_samples, max_seconds, goal)  # empty, or a record at fault
    largest = max(int(d) for d in first[0].shape[-3:-1])
    more = max_samples - 1
    if max_seconds is not None:
        elapsed = time.time() - start
        more = min(more, int(max(max_seconds - elapsed, 0.0) / max(elapsed, 1e-6)))
    if largest >= goal or more < 1:
        return largest

    def side(*element: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.reduce_max(tf.shape(element[0])[-3:-1]), tf.int32)

    end = tf.data.Dataset.from_tensors(tf.constant(-1, tf.int32))  # a batch that is never empty
    try:
        sides = ds.skip(1).take(more).map(side).concatenate(end).batch(more + 1).get_single_element().numpy()[:-1]
    except (tf.errors.OpError, ValueError) as exc:
        raise record_error(source, exc) from exc
    reached = np.flatnonzero(sides >= goal)
    counted = sides[:reached[0] + 1] if len(reached) else sides
    return max(largest, int(counted.max(initial=0)))


def _max_side_iterating(source: Any, max_samples: int, max_seconds: float | None, goal: int) -> int:
    """`max_side` one sample at a time through a Python iterator: an empty dataset gives 0, a record at fault
    its `RecordError`."""
    side = 0
    start = time.time()
    try:
        for element in as_tf_dataset(source).take(max_samples):
            side = max(side, *(int(d) for d in element[0].shape[-3:-1]))
            if side >= goal or (max_seconds is not None and time.time() - start >= max_seconds):
                break
    except (tf.errors.OpError, ValueError) as exc:
        raise record_error(source, exc) from exc
    return side


def _float_pipeline(ds: tf.data.Dataset, size: tuple[int, int] | None, dtype: str, antialias: bool,
                    batch_size: int | None = None, frames: int | None = None) -> tf.data.Dataset:
    """uint8/float32 conversion for datasets that yield float examples in [0, 1].

    With `batch_size` (for samples of one static shape only), samples are batched first and converted a batch
    at a time: per-sample conversion cost more than the platform's own decoding (10,000 test images of 64 px:
    5.6 s against 2.6 s for the bare iteration). Samples already at `size` are not resized. With `frames`, clips
    keep that many evenly spaced frames before they are resized and converted. Yields `(x, y, outside, side)`,
    batched when `batch_size` is given (per sample, `outside`: values beyond [0, 1] in the frames kept; `side`: the
    largest height or width of its frames before resizing).
    """
    shape = ds.element_spec[0].shape
    batched = batch_size is not None
    resize = size is not None and not (shape.is_fully_defined() and tuple(shape[-3:-1]) == tuple(size))
    if batched:
        ds = ds.batch(batch_size)

    @tf.autograph.experimental.do_not_convert
    def convert(*element: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        x, y = element[0], element[-1]  # several matrix bundles: keep the first
        x = keep_frames(tf.convert_to_tensor(x, tf.float32), frames)
        axes = list(range(1, x.shape.rank)) if batched else None
        outside = tf.logical_or(tf.reduce_min(x, axis=axes) < 0.0, tf.reduce_max(x, axis=axes) > 1.0)
        side = tf.reduce_max(tf.shape(x)[-3:-1])
        if batched:
            side = tf.fill(tf.shape(x)[:1], side)
        if resize:
            if batched:  # [B, T, H, W, C]: resize the B*T frames
                resized = tf.image.resize(tf.reshape(x, [-1, *x.shape[-3:]]), size, antialias=antialias)
                x = tf.reshape(resized, tf.concat([tf.shape(x)[:2], tf.shape(resized)[1:]], 0))
            else:
                x = tf.image.resize(x, size, antialias=antialias)
        if dtype == "uint8":
            x = tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)
        return x, tf.cast(y, tf.float32), outside, side

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def to_arrays(source: Any, *, max_samples: int | None = None, size: tuple[int, int] | None = None,
              max_bytes: int | None = None, dtype: str = "uint8", batch_size: int = 64,
              antialias: bool = True, expected_count: int | None = None, frames: int | None = None,
              max_seconds: float | None = None) -> Arrays:
    """Decode `source` into arrays, in dataset order.

    Args:
        source: our `AutoDLDataset`, the official dataset object, or a `tf.data.Dataset`.
        max_samples: read at most this many samples.
        size: `(height, width)` to resize every frame to; required when sizes vary.
        max_bytes: stop once the decoded examples take this much memory.
        dtype: "uint8" (values in [0, 1] scaled to 0..255) or "float32" (as the dataset yields).
        batch_size: decode batch size.
        antialias: antialiased bilinear resizing (better when shrinking large images).
        expected_count: when the whole split is read, the number of samples it must hold; our
            `AutoDLDataset` supplies its metadata's `sample_count` itself.
        frames: keep at most this many evenly spaced frames of each clip (`frame_positions`), chosen before
            frames are resized or converted (our `AutoDLDataset`: before they are decoded).
        max_seconds: stop once reading has taken this long (after at least one batch; `complete` is then
            False unless the end was reached): a first sample of long clips must not take a minute.

    Raises:
        RecordError: a record that cannot be read or decoded (file and index when known).
        SampleCountError: the split holds another number of samples than expected.
        ValueError: samples of different sizes without `size`.
    """
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
    ours = isinstance(source, AutoDLDataset)
    if max_samples is not None:
        batch_size = max(1, min(batch_size, max_samples))
    pre_batched = False
    start = time.time()
    if ours and dtype == "uint8":
        rows, cols = source.get_metadata().get_matrix_size(0)
        native_side = max(rows, cols) if rows > 0 and cols > 0 else 0  # decoded at `size` directly: not measured
        ds = source.uint8_dataset(size, antialias=antialias, frames=frames).map(
            lambda x, y: (x, y, tf.constant(False), tf.constant(native_side, tf.int32)))
    else:
        source_ds = as_tf_dataset(source)
        shape = source_ds.element_spec[0].shape
        pre_batched = shape.is_fully_defined()  # one static shape: convert by batch
        ds = _float_pipeline(source_ds, size, dtype, antialias,
                             _bounded_batch(shape, 4, batch_size) if pre_batched else None, frames)
    if ours and expected_count is None:
        expected_count = source.get_metadata().size()
    batched = ds.element_spec[0].shape.is_fully_defined()
    # Variable sizes cannot be batched: read one by one and insist they agree.
    if not pre_batched:
        ds = ds.batch(_bounded_batch(ds.element_spec[0].shape, ds.element_spec[0].dtype.size, batch_size)
                      if batched else 1)
    ds = ds.prefetch(2).with_options(_read_options())

    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    count = out_of_range = n_bytes = native = 0
    exhausted = False
    iterator = iter(ds)
    while True:
        if (max_samples is not None and count >= max_samples) or (
                max_bytes is not None and n_bytes >= max_bytes) or (
                max_seconds is not None and count and time.time() - start >= max_seconds):
            break
        try:
            x, y, outside, side = next(iterator)
        except StopIteration:
            exhausted = True
            break
        except (tf.errors.OpError, ValueError) as exc:
            raise record_error(source, exc) from exc
        x, y = x.numpy(), y.numpy()
        if xs and x.shape[1:] != xs[0].shape[1:]:
            raise ValueError(f"samples have different shapes ({xs[0].shape[1:]} and {x.shape[1:]}); "
                             "pass size=(height, width) to resize them")
        xs.append(x)
        ys.append(y)
        count += len(x)
        out_of_range += int(np.sum(outside.numpy()))
        native = max(native, int(np.max(side.numpy(), initial=0)))
        n_bytes += x.nbytes
    if out_of_range and dtype == "uint8":
        logger.warning("%d samples had values outside [0, 1] and were clipped to uint8", out_of_range)

    if xs:
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    else:
        spec = ds.element_spec
        x_all = np.zeros([0, *[d or 0 for d in spec[0].shape[1:]]], dtype=dtype)
        y_all = np.zeros([0, spec[1].shape[-1] or 0], dtype=np.float32)
    keep = len(x_all)
    if max_samples is not None:
        keep = min(keep, max_samples)
    if max_bytes is not None and n_bytes > max_bytes and keep > 1:
        keep = min(keep, max(1, int(len(x_all) * max_bytes / n_bytes)))
    left_x, left_y = x_all[keep:], y_all[keep:]
    x_all, y_all = x_all[:keep], y_all[:keep]
    complete = exhausted or (expected_count is not None and keep >= expected_count)
    if exhausted and expected_count is not None and count != expected_count:
        where = source.get_metadata().get_dataset_name() if ours else "the dataset"
        raise SampleCountError(f"{where}: metadata sample_count is {expected_count}, "
                               f"but the records hold {count} samples")
    rest = None if complete else _rest(source, left_x, left_y, iterator)
    return Arrays(x=x_all, y=y_all, complete=complete, out_of_range=out_of_range, rest=rest, native_side=native)


def read_on(arrays: Arrays, max_samples: int, max_seconds: float | None = None) -> Arrays:
    """`arrays` followed by the samples after them (its `rest`), `max_samples` in all: a read that stopped early
    goes on where it stopped, nothing decoded twice. Reading stops after `max_seconds` (having read at least one
    batch). The result's `rest` goes on after it in turn.

    Raises:
        RecordError: a record that cannot be read or decoded.
    """
    if arrays.rest is None:  # nothing after them
        return arrays
    xs, ys, count = [arrays.x], [arrays.y], len(arrays)
    exhausted, start = arrays.complete, time.time()
    while not exhausted and count < max_samples and (
            count == len(arrays) or max_seconds is None or time.time() - start < max_seconds):
        try:
            x, y = next(arrays.rest)
        except StopIteration:
            exhausted = True
            break
        xs.append(x)
        ys.append(y)
        count += len(x)
    x_all, y_all = (np.concatenate(xs), np.concatenate(ys)) if len(xs) > 1 else (arrays.x, arrays.y)
    keep = min(count, max_samples)
    left = [(x_all[keep:], y_all[keep:])] if keep < count else []
    complete = exhausted and not left
    rest = None if complete else itertools.chain(left, () if exhausted else arrays.rest)
    return Arrays(x=x_all[:keep], y=y_all[:keep], complete=complete, out_of_range=arrays.out_of_range, rest=rest)


def _rest(source: Any, x: np.ndarray, y: np.ndarray, iterator: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The samples read but not kept, then the batches `iterator` has not delivered yet (numpy)."""
    if len(x):
        yield x, y
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (tf.errors.OpError, ValueError) as exc:
            raise record_error(source, exc) from exc
        yield batch[0].numpy(), batch[1].numpy()


def record_error(source: Any, exc: Exception) -> RecordError:
    """A read failure as a RecordError naming the file and record (located when `source` is ours)."""
    message = getattr(exc, "message", str(exc)).strip().splitlines()[0]
    if isinstance(source, AutoDLDataset):
        located = locate_bad_record(source)
        if located is not None:
            return located
        return RecordError(f"{source.get_metadata().get_dataset_name()}: cannot read ({message})")
    return RecordError(f"dataset could not be read or decoded: {message}")


def uint8_batches(source: Any, *, size: tuple[int, int], batch_size: int, skip: int = 0,
                  shuffle_buffer: int = 1024, seed: int = 0, antialias: bool = True,
                  frames: int | None = None) -> Any:
    """An endless iterator of numpy `(uint8 x [B,T,H,W,C], float32 y [B,K])` batches of the samples after the
    first `skip`, repeated and shuffled within `shuffle_buffer`.

    For training on the part of a dataset that is not cached; clips keep `frames` evenly spaced frames. Our
    `AutoDLDataset` skips records before they are decoded; any other dataset decodes the skipped samples too
    (on every pass when repeating).
    """
    if isinstance(source, AutoDLDataset):
        ds = source.uint8_dataset(size, antialias=antialias, frames=frames, skip=skip)
    else:
        ds = _float_pipeline(as_tf_dataset(source).skip(skip), size, "uint8", antialias, frames=frames).map(
            lambda x, y, outside, side: (x, y))
    ds = ds.repeat().shuffle(shuffle_buffer, seed=seed).batch(batch_size).prefetch(2)
    return ds.as_numpy_iterator()
