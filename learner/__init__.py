"""Transfer-learning engine: backbones, data to tensors, video frame averaging, training loop."""

from learner import _triton_guard  # noqa: F401  (first: must precede any torch import)
