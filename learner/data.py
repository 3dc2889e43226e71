"""From AutoDL data to training batches: decode once, cache, stream the rest, augment lightly.

Images are decoded once into uint8 `[N, T, H, W, C]` at the configuration's resolution (the
test set too, and it is reused across `test` calls). What exceeds the memory cap is streamed from
the dataset during training. Augmentation is a random horizontal flip and a random crop of a
reflect-padded image, done on the batch in torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from metadata.arrays import to_arrays, uint8_batches  # noqa: E402

__all__ = ["TrainSet", "load_train_set", "load_test_array", "stratified_split", "is_multilabel", "to_float_batch",
           "augment", "forward_batch", "inference_batch", "DEFAULT_FORWARD_ACTIVATIONS"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 4 * 1024**3

# Activations (float elements of the largest layer output) of one inference pass on a CPU: about 20 MB, what a
# last-level cache of 32 MB holds. Passes past it outgrow the caches: EfficientNet-Lite0 at 224 px (24 activations
# per input pixel) ran about 4 times faster in passes of 4 images than of 64 (benchmarks/forward_batch.py).
DEFAULT_FORWARD_ACTIVATIONS = 5_000_000


def forward_batch(limit: int, side: int, frames: int = 1, *, per_pixel: float = 1.0,
                  activations: int | None = DEFAULT_FORWARD_ACTIVATIONS, device: torch.device | None = None) -> int:
    """Samples per inference pass: at most `limit` and, on a CPU, at most `activations` float elements in the
    network's largest layer output (`per_pixel` of them per input pixel: `Backbone.activations_per_pixel`; every
    frame of a clip counted; at least one sample). `activations` 0 or None, or a GPU (which wants large passes):
    `limit`."""
    if not activations or (device is not None and device.type != "cpu"):
        return max(1, limit)
    return max(1, min(limit, int(activations / (per_pixel * side * side * max(1, frames)))))


def inference_batch(model: Any, x: np.ndarray, limit: int, side: int, clip_frames: int,
                    activations: int | None) -> int:
    """`forward_batch` for a `Backbone` on uint8 `[N, T, H, W, C]` inputs `x` resized to `side`: a clip (T > 1)
    passes `clip_frames` frames through the network."""
    return forward_batch(limit, side, clip_frames if x.shape[1] > 1 else 1, per_pixel=model.activations_per_pixel(),
                         activations=activations, device=model.mean.device)


def is_multilabel(y: np.ndarray) -> bool:
    """Multilabel unless every row has exactly one positive."""
    return bool(np.any((y > 0).sum(axis=1) != 1))


def stratified_split(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): per class for multiclass labels, at random otherwise.

    A class with a single sample stays in train; at least one sample goes to validation.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n = len(y)
    if is_multilabel(y):
        order = rng.permutation(n)
        n_val = max(1, int(round(fraction * n)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    labels = y.argmax(axis=1)
    val = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) >= 2:
            val.extend(members[: max(1, int(round(fraction * len(members))))])
    val = np.sort(np.array(val, dtype=np.int64))
    if len(val) == 0:
        val = np.array([rng.integers(n)])
    train = np.setdiff1d(np.arange(n), val)
    return train, val


@dataclass
class TrainSet:
    """Cached training samples, plus a stream of the rest when the cache is incomplete.

    Two kinds of stream. A *growing* one (`grow`) yields the samples after the first `read` ones once, in
    dataset order: each batch it yields joins the cache, and training draws only from the cache, so the tail is
    decoded once (while training) and then trained on like the rest; at its end the cache is complete. Should
    the cache reach `max_bytes` first, `restart(read)` gives a *repeating*, shuffled stream of what is not
    cached, whose batches are trained on directly (every other batch), as for a cache cut by memory from the
    start. A platform dataset has no random access: each pass of a repeating stream decodes the cached samples
    again to skip them, which is why a cache cut by time grows instead.
    """

    x: np.ndarray  # uint8 [N, T, H, W, C]
    y: np.ndarray  # float32 [N, K]
    stream: Iterator[tuple[np.ndarray, np.ndarray]] | None = None
    seed: int = 0
    grow: bool = False
    read: int = 0  # samples of the dataset read so far (cached or set aside by the caller), for `restart`
    max_bytes: int | None = None
    restart: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]] | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} samples but {len(self.y)} labels")
        if len(self.x) == 0:
            raise ValueError("no training samples")
        self._rng = np.random.default_rng(self.seed)
        self._turn = 0
        self._x_buffer, self._y_buffer = self.x, self.y  # x, y are their first rows (capacity grows by doubling)

    def __len__(self) -> int:
        return len(self.x)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A random batch: from the cache, alternating with streamed batches when there is a stream.

        A stream that fails (a record that does not decode, a read error) is logged once and
        dropped; training goes on with the cached samples, which are valid.
        """
        self._turn += 1
        if self.stream is not None and self._turn % 2 == 0:
            try:
                x, y = next(self.stream)
                if not self.grow:
                    return x, y
                self._append(x, y)
            except StopIteration:  # a growing stream has delivered every sample
                logger.info("[data] the whole training set is cached now (%d samples)", len(self.x))
                self.stream = None
            except Exception as exc:  # noqa: BLE001 - whatever broke the stream, the cache still trains
                logger.error("[data] streaming the uncached training samples failed (%s: %s); "
                             "training on the %d cached samples from now on", type(exc).__name__, exc, len(self.x))
                self.stream = None
        idx = self._rng.choice(len(self.x), size=min(batch_size, len(self.x)), replace=len(self.x) < batch_size)
        return self.x[idx], self.y[idx]

    def _append(self, x: np.ndarray, y: np.ndarray) -> None:
        """Cache a streamed batch; at `max_bytes` switch to the repeating stream of the rest."""
        if self.max_bytes is not None and self.x.nbytes + x.nbytes > self.max_bytes:
            self.grow = False
            self.stream = self.restart(self.read) if self.restart is not None else None
            logger.info("[data] cache full at %d samples (%.0f MB); streaming the rest", len(self.x),
                        self.x.nbytes / 1e6)
            return
        size, n = len(self.x), len(self.x) + len(x)
        if n > len(self._x_buffer):
            capacity = max(n, 2 * len(self._x_buffer))
            self._x_buffer = np.concatenate([self.x, np.empty((capacity - size, *x.shape[1:]), x.dtype)])
            self._y_buffer = np.concatenate([self.y, np.empty((capacity - size, *y.shape[1:]), y.dtype)])
        self._x_buffer[size:n], self._y_buffer[size:n] = x, y
        self.read += len(x)
        self.x, self.y = self._x_buffer[:n], self._y_buffer[:n]


def load_train_set(source: Any, *, resolution: int, batch_size: int, max_bytes: int = DEFAULT_CACHE_BYTES,
                   max_samples: int | None = None, stream_rest: bool = False, seed: int = 0,
                   frames: int | None = None, shuffle_buffer: int = 1024) -> TrainSet:
    """Decode a training split into a `TrainSet` at `resolution` (clips: at most `frames` evenly spaced frames).

    The cache stops at `max_bytes` or `max_samples`. Beyond `max_bytes` the rest is streamed, repeating and
    shuffled within `shuffle_buffer` samples (each sample it holds is decoded before the first batch comes: keep
    it small where samples decode slowly); beyond `max_samples`, with `stream_rest` (a time-capped cache), the
    cache grows from a stream of the rest while training (`TrainSet`); a deliberate subset stays as it is.
    """
    arrays = to_arrays(source, size=(resolution, resolution), max_bytes=max_bytes, max_samples=max_samples,
                       frames=frames)
    size = (resolution, resolution)

    def repeating(skip: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return uint8_batches(source, size=size, batch_size=batch_size, skip=skip, seed=seed, frames=frames,
                             shuffle_buffer=shuffle_buffer)

    data = TrainSet(arrays.x, arrays.y, seed=seed, read=len(arrays), max_bytes=max_bytes, restart=repeating)
    if arrays.complete:
        return data
    if max_samples is None or len(arrays) < max_samples:  # cut by memory
        logger.info("[data] cached %d samples (%.0f MB); streaming the rest", len(arrays), arrays.x.nbytes / 1e6)
        data.stream = repeating(len(arrays))
    elif stream_rest:
        logger.info("[data] cached %d samples (%.0f MB); the rest joins the cache while training", len(arrays),
                    arrays.x.nbytes / 1e6)
        data.stream, data.grow = arrays.rest, True
    return data


def load_test_array(source: Any, *, resolution: int, frames: int | None = None) -> np.ndarray:
    """Decode a whole test split once, in order: uint8 `[N, T, H, W, C]` (at most `frames` per clip)."""
    return to_arrays(source, size=(resolution, resolution), frames=frames).x


def to_float_batch(x: np.ndarray | torch.Tensor, device: torch.device, resolution: int | None = None,
                   channels_last: bool = True, antialias: bool = True) -> torch.Tensor:
    """uint8 `[B, H, W, C]` -> float `[B, C, H, W]` in [0, 1] on `device` (resized if needed; bilinear, antialiased
    unless asked not to)."""
    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x).to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    if resolution is not None and t.shape[-2:] != (resolution, resolution):
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=antialias)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip and random crop (reflect padding of 1/8 of the side) per sample."""
    b, _, h, w = x.shape
    flip = (torch.rand(b, generator=generator) < 0.5).tolist()
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).tolist()
    crops = []
    for i, (dy, dx) in enumerate(offsets):
        crop = padded[i, :, dy:dy + h, dx:dx + w]
        crops.append(crop.flip(-1) if flip[i] else crop)
    return torch.stack(crops).contiguous(memory_format=torch.channels_last)
