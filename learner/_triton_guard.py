"""Keep `triton` from being imported in this process (must run before torch is imported).

On this stack (CUDA build of torch 2.14 + TensorFlow 2.21), importing `triton` after TensorFlow
segfaults the process; building a `torch.optim` optimizer, `import torchvision` or `import timm`
each import it. The official ingestion program imports TensorFlow before `model.py`, so the
submission must protect itself. We never use `torch.compile`, the only user of triton, so
marking the module absent is safe: torch treats triton as not installed. A process that has
already imported triton is left alone.
"""

from __future__ import annotations

import sys


def block_triton() -> None:
    """Make `import triton` raise ImportError unless triton is already loaded."""
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]


block_triton()
