"""The anytime training loop: `train_for(seconds)` trains for a time slice, `predict` any time.

A `TrainConfig` drives everything. Multiclass data trains with softmax cross-entropy, multilabel
with sigmoid BCE (detected from the labels). Videos go frame by frame through the image backbone;
the clip's logits (training) or probabilities (prediction, Eq. 2) are the mean over its sampled
frames. CPU: channels-last tensors, `inference_mode` for prediction. CUDA: automatic mixed precision.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from learner.backbones import Backbone, get_backbone, weights_path  # noqa: E402
from learner.config import TrainConfig  # noqa: E402
from learner.data import (DEFAULT_FORWARD_ACTIVATIONS, TrainSet, augment, inference_batch, is_multilabel,  # noqa: E402
                          to_float_batch)
from learner.video import average_frames, sample_frames  # noqa: E402

__all__ = ["TrainStats", "Trainer", "DivergenceError", "default_device"]

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DivergenceError(RuntimeError):
    """The loss stayed non-finite through several restores with a halved learning rate."""


@dataclass
class TrainStats:
    steps: int
    samples: int
    seconds: float
    loss: float  # mean loss over the slice (nan when no step ran)


class Trainer:
    """Fine-tunes one backbone with one configuration.

    Args:
        config: the configuration.
        num_classes: output dimension.
        in_channels: channels of the images.
        weights_dir: folder holding `<backbone>-<weights id>.pt` (needed unless config.weights is None).
        multilabel: loss choice; None decides from the first training labels.
        device: defaults to CUDA when available.
        seed: seeds sampling, augmentation and the head's initialisation.
        max_divergences: consecutive non-finite losses after which `train_for` raises DivergenceError.
        batch_activations: float elements of the largest layer output in one inference pass on a CPU at most
            (`learner.data.forward_batch`; 0: the caller's batch size whatever the side).
    """

    def __init__(self, config: TrainConfig, *, num_classes: int, in_channels: int = 3, weights_dir: str | None = None,
                 multilabel: bool | None = None, device: torch.device | None = None, seed: int = 0,
                 max_divergences: int = 5, batch_activations: int | None = DEFAULT_FORWARD_ACTIVATIONS):
        self.config = config
        self.batch_activations = batch_activations  # inference passes on a CPU: `learner.data.forward_batch`
        self.device = device or default_device()
        self.multilabel = multilabel
        torch.manual_seed(seed)
        weights_file = None
        if config.weights is not None:
            if weights_dir is None:
                raise ValueError(f"configuration {config.name or config.backbone!r} needs weights "
                                 f"{config.weights!r}: pass weights_dir")
            weights_file = weights_path(weights_dir, config.backbone, config.weights)
        self.model: Backbone = get_backbone(config.backbone, num_classes=num_classes, weights_file=weights_file,
                                            dropout=config.dropout, in_channels=in_channels,
                                            random_init=config.weights is None)
        self.model.to(self.device, memory_format=torch.channels_last)
        params = self.model.parameters()
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, nesterov=True,
                                             weight_decay=config.weight_decay)
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.train_set: TrainSet | None = None
        self.total_steps = 0
        self.divergences = 0
        self.max_divergences = max_divergences
        self._consecutive_divergences = 0
        self._step_time: float | None = None
        self._snapshot: dict | None = None

    @property
    def step_time(self) -> float | None:
        """Seconds per training step (moving average), None before the first step."""
        return self._step_time

    # -- data -----------------------------------------------------------------------------------
    def set_train_data(self, train_set: TrainSet) -> None:
        self.train_set = train_set
        if self.multilabel is None:
            self.multilabel = is_multilabel(train_set.y)

    def _frames(self, x: np.ndarray, training: bool) -> tuple[np.ndarray, int]:
        """`[B, T, H, W, C]` -> (`[B*m, H, W, C]`, m)."""
        t = x.shape[1]
        if t == 1:
            return x[:, 0], 1
        m = self.config.frames_per_clip
        clips = sample_frames(x, m, self.config.frame_sampling, self.rng if training else None)
        return clips.reshape(-1, *clips.shape[2:]), m

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.cross_entropy(logits, y.argmax(dim=1))

    # -- training -------------------------------------------------------------------------------
    def _step(self, x_np: np.ndarray, y_np: np.ndarray) -> float:
        frames, m = self._frames(x_np, training=True)
        x = augment(to_float_batch(frames, self.device, self.config.resolution), self.generator)
        y = torch.as_tensor(y_np, dtype=torch.float32, device=self.device)
        self.model.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = average_frames(self.model(x), m) if m > 1 else self.model(x)
            loss = self._loss(logits.float(), y)
        if not torch.isfinite(loss):
            return float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def _recover(self) -> None:
        """The loss went non-finite: restore the last good weights and halve the learning rate.

        Raises:
            DivergenceError: after `max_divergences` non-finite losses in a row.
        """
        self.divergences += 1
        self._consecutive_divergences += 1
        if self._consecutive_divergences >= self.max_divergences:
            raise DivergenceError(f"configuration {self.config.name or self.config.backbone!r}: the loss stayed "
                                  f"non-finite through {self._consecutive_divergences} restores "
                                  f"(learning rate down to {self.optimizer.param_groups[0]['lr']:.3g})")
        if self._snapshot is not None:
            self.model.load_state_dict(self._snapshot["model"])
            self.optimizer.load_state_dict(self._snapshot["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        logger.warning("[train] non-finite loss: restored the last good weights, learning rate now %.3g",
                       self.optimizer.param_groups[0]["lr"])

    def train_for(self, seconds: float, *, max_steps: int | None = None) -> TrainStats:
        """Train for about `seconds` (never starting a step expected to end after it); return stats."""
        if self.train_set is None:
            raise RuntimeError("call set_train_data() before train_for()")
        start = time.perf_counter()
        deadline = start + seconds
        steps = samples = 0
        losses = []
        while max_steps is None or steps < max_steps:
            now = time.perf_counter()
            if now >= deadline or (self._step_time is not None and now + self._step_time > deadline):
                break
            x, y = self.train_set.sample(self.config.batch_size)
            step_start = time.perf_counter()
            loss = self._step(x, y)
            elapsed = time.perf_counter() - step_start
            self._step_time = elapsed if self._step_time is None else 0.8 * self._step_time + 0.2 * elapsed
            if not np.isfinite(loss):
                self._recover()
                continue
            self._consecutive_divergences = 0
            losses.append(loss)
            steps += 1
            samples += len(x)
        self.total_steps += steps
        if steps:
            self._snapshot = {"model": copy.deepcopy(self.model.state_dict()),
                              "optimizer": copy.deepcopy(self.optimizer.state_dict())}
        return TrainStats(steps=steps, samples=samples, seconds=time.perf_counter() - start,
                          loss=float(np.mean(losses)) if losses else float("nan"))

    # -- inference ------------------------------------------------------------------------------
    @torch.inference_mode()
    def _outputs(self, x: np.ndarray, batch_size: int, features: bool) -> np.ndarray:
        self.model.eval()
        outputs = []
        step = inference_batch(self.model, x, batch_size, self.config.resolution, self.config.frames_per_clip,
                               self.batch_activations)
        for i in range(0, len(x), step):
            frames, m = self._frames(x[i:i + step], training=False)
            batch = to_float_batch(frames, self.device, self.config.resolution)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                if features:
                    out = self.model.features(batch).float()
                else:
                    logits = self.model(batch).float()
                    out = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
            outputs.append(average_frames(out, m) if m > 1 else out)
        return torch.cat(outputs).cpu().numpy().astype(np.float32)

    def predict(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Probabilities float32 `[N, K]` for uint8 `[N, T, H, W, C]`, in input order; for a clip,
        the mean of its frames' probabilities. `batch_size` samples per pass at most (fewer on a CPU:
        `batch_activations`)."""
        out = self._outputs(x, batch_size, features=False)
        if not np.isfinite(out).all():
            raise FloatingPointError("the model produced non-finite predictions")
        return out

    def features(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Penultimate features float32 `[N, D]` (frame-averaged for clips)."""
        return self._outputs(x, batch_size, features=True)
