"""The fingerprint network: a frozen backbone whose penultimate features describe a sample.

The paper uses ResNet18 (512-d after global pooling). Weights come from a local file (ImageNet
where a machine has them, otherwise weights from `learner.pretrain` on the known pool). Input
channels are made RGB deterministically (gray repeated, extra channels dropped), so a fingerprint
never passes through a randomly initialised adapter. A clip's vector is the mean over its frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402

from learner.backbones import get_backbone  # noqa: E402
from learner.data import DEFAULT_FORWARD_ACTIVATIONS, inference_batch, to_float_batch  # noqa: E402
from learner.video import sample_frames  # noqa: E402

__all__ = ["ExtractorInfo", "FeatureExtractor", "POOLINGS", "file_digest"]

POOLINGS = ("head", "stages")  # what `FeatureExtractor.extract` returns: penultimate or pooled stage features


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@dataclass(frozen=True)
class ExtractorInfo:
    """Identifies the features: a store and a batch must agree on all of it."""

    backbone: str
    weights: str  # file digest, or "random-<seed>"
    resolution: int
    feature_dim: int


def _rgb(x: np.ndarray) -> np.ndarray:
    c = x.shape[-1]
    if c == 3:
        return x
    if c < 3:
        return np.repeat(x[..., :1], 3, axis=-1)
    return x[..., :3]


class FeatureExtractor:
    """Frozen backbone features of uint8 `[N, T, H, W, C]` samples.

    Args:
        backbone: registry name (the paper: resnet18).
        weights_file: local weights; None builds seeded random weights (tests, or no weights at all).
        resolution: input side.
        frames: frames per clip (uniformly spaced) for videos.
        seed: the random initialisation's seed when `weights_file` is None.
        batch_size: samples per forward pass at most; on a CPU also at most `batch_activations` float elements
            in the network's largest layer output (`learner.data.forward_batch`; 0: `batch_size` samples whatever
            their side).
    """

    def __init__(self, backbone: str = "resnet18", weights_file: str | None = None, *, resolution: int = 112,
                 frames: int = 4, seed: int = 0, device: torch.device | None = None, batch_size: int = 64,
                 batch_activations: int | None = DEFAULT_FORWARD_ACTIVATIONS):
        torch.manual_seed(seed)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = get_backbone(backbone, num_classes=1, weights_file=weights_file, random_init=weights_file is None)
        self.model.to(self.device, memory_format=torch.channels_last).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.resolution, self.frames, self.batch_size = resolution, frames, batch_size
        self.batch_activations = batch_activations
        weights = file_digest(weights_file) if weights_file else f"random-{seed}"
        self.info = ExtractorInfo(backbone=backbone, weights=weights, resolution=resolution,
                                  feature_dim=self.model.spec.feature_dim)

    @torch.inference_mode()
    def extract(self, x: np.ndarray, *, resolution: int | None = None, flip: bool = False,
                mirrored: bool = False, pooling: str = "head") -> np.ndarray:
        """float32 `[N, D]` for uint8 `[N, T, H, W, C]`: D = `feature_dim` with `pooling` "head" (the
        penultimate features: fingerprints), or the backbone's pooled stage outputs with "stages"
        (`Backbone.stage_features`: what a linear probe reads best).

        `resolution` overrides the extractor's input side for this call; `flip` averages the features
        with those of the horizontally flipped input (test-time augmentation, twice the cost); `mirrored`
        gives the flipped input's features alone, so that a caller holding the plain features gets the
        flipped ones as `0.5 * (plain + mirrored)` at half the cost.
        """
        if flip and mirrored:
            raise ValueError("extract: 'flip' and 'mirrored' exclude each other")
        if pooling not in POOLINGS:
            raise ValueError(f"extract: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        features = self.model.features if pooling == "head" else self.model.stage_features
        side = resolution or self.resolution
        out = []
        step = inference_batch(self.model, x, self.batch_size, side, self.frames, self.batch_activations)
        for i in range(0, len(x), step):
            chunk = _rgb(x[i:i + step])
            m = 1
            if chunk.shape[1] > 1:
                chunk = sample_frames(chunk, self.frames, "uniform")
                m = chunk.shape[1]
            frames = chunk.reshape(-1, *chunk.shape[2:])
            batch = to_float_batch(frames, self.device, side)
            feats = features(batch.flip(-1) if mirrored else batch).float()
            if flip:
                feats = 0.5 * (feats + features(batch.flip(-1)).float())
            out.append(feats.view(-1, m, feats.shape[-1]).mean(1))
        if not out:
            dim = (self.info.feature_dim if pooling == "head"
                   else features(torch.zeros(1, 3, side, side, device=self.device)).shape[1])
            return np.zeros((0, dim), np.float32)
        return torch.cat(out).cpu().numpy().astype(np.float32)

