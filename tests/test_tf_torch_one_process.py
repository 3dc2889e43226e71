"""TensorFlow first, then our packages, then torch training: one process, no crash.

The official ingestion program imports TensorFlow before `model.py`. On this stack, importing
triton (which torch.optim, torchvision and timm do) after TensorFlow segfaults; `learner` blocks
triton on import. This runs in a subprocess so that a segfault fails the test instead of pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import tensorflow as tf

    ds = tf.data.Dataset.range(8).map(lambda i: tf.cast(i, tf.float32) * 2.0).batch(4)
    assert [b.numpy().tolist() for b in ds] == [[0, 2, 4, 6], [8, 10, 12, 14]]

    import learner  # noqa: F401  our package: must make what follows safe
    import metadata.reader  # noqa: F401
    import torch
    import torchvision
    import timm  # noqa: F401

    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(2, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
    loss.backward()
    optimizer.step()
    conv = torch.nn.Conv2d(3, 4, 3)
    adam = torch.optim.Adam(conv.parameters())
    out = conv(x).sum()
    out.backward()
    adam.step()
    again = tf.data.Dataset.from_tensor_slices(tf.ones([3, 2])).map(lambda v: v + 1.0)
    assert [v.numpy().tolist() for v in again] == [[2.0, 2.0]] * 3
    print("ok", tuple(conv(x).shape))
""")


def test_tensorflow_then_our_packages_then_torch_training() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert result.stdout.strip().endswith("ok (2, 4, 30, 30)")
