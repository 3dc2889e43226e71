"""Video as frames: sampling strategies and the clip prediction as the mean of frame predictions.

The paper's Eq. 2: a clip's prediction is c = (1/m) Σ f(v_i) over m sampled frames v_i, every
frame going through the image backbone.
"""

from __future__ import annotations

import numpy as np

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402

__all__ = ["sample_frame_indices", "sample_frames", "average_frames"]


def sample_frame_indices(n_frames: int, m: int, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of `m` frames of a clip of `n_frames`.

    uniform: evenly spaced over the clip (deterministic); segments: one random frame in each of
    m equal segments (TSN-style; segment centres when no `rng` is given); middle: m consecutive
    frames around the centre, for clips whose action sits mid-way. Clips shorter than m repeat frames.
    """
    if n_frames < 1 or m < 1:
        raise ValueError(f"need n_frames >= 1 and m >= 1, got {n_frames} and {m}")
    if strategy == "uniform":
        return np.round(np.linspace(0, n_frames - 1, m)).astype(np.int64)
    if strategy == "segments":
        edges = np.linspace(0, n_frames, m + 1)
        if rng is None:
            picks = (edges[:-1] + edges[1:]) / 2
        else:
            picks = edges[:-1] + rng.random(m) * (edges[1:] - edges[:-1])
        return np.clip(np.floor(picks), 0, n_frames - 1).astype(np.int64)
    if strategy == "middle":
        start = (n_frames - m) / 2
        return np.clip(np.floor(start + np.arange(m)), 0, n_frames - 1).astype(np.int64)
    raise ValueError(f"unknown frame sampling strategy {strategy!r} (uniform, segments, middle)")


def sample_frames(x: np.ndarray, m: int, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """`[N, T, H, W, C]` -> `[N, m, H, W, C]`; each clip sampled independently (with `rng`)."""
    n, t = x.shape[:2]
    if t == m and strategy != "segments":
        return x
    if rng is None:
        return x[:, sample_frame_indices(t, m, strategy)]
    idx = np.stack([sample_frame_indices(t, m, strategy, rng) for _ in range(n)])
    return np.take_along_axis(x, idx[:, :, None, None, None], axis=1)


def average_frames(frame_outputs: torch.Tensor, m: int) -> torch.Tensor:
    """`[N*m, K]` per-frame outputs (clip-major) -> `[N, K]` clip means."""
    if frame_outputs.shape[0] % m:
        raise ValueError(f"{frame_outputs.shape[0]} frame outputs are not a multiple of m={m}")
    return frame_outputs.view(-1, m, frame_outputs.shape[-1]).mean(dim=1)
