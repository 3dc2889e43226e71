"""Training and prediction throughput of the learner versus bare torch loops on the same model.

    python benchmarks/learner_throughput.py [--backbones a,b] [--sizes 64,112] [--batch 32] [--steps 5]

For each backbone and input size, in one run: images/s of `Trainer.train_for` (uint8 batches ->
float, augmentation, forward, backward, step) next to a bare forward + backward + step on a
ready float tensor, and of `Trainer.predict` next to a bare `inference_mode` forward. Random
weights (speed does not depend on them). Target ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import learner  # noqa: E402,F401  (triton guard before torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from learner.backbones import get_spec, list_backbones  # noqa: E402
from learner.config import TrainConfig  # noqa: E402
from learner.data import TrainSet  # noqa: E402
from learner.trainer import Trainer  # noqa: E402


def timed(fn, steps: int, images_per_step: int) -> float:
    fn()  # warm-up
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps * images_per_step / (time.perf_counter() - start)


def measure(name: str, size: int, batch: int, steps: int) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(0)
    x_uint8 = rng.integers(0, 256, (batch * 4, 1, size, size, 3), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[np.arange(batch * 4) % 10]
    config = TrainConfig(backbone=name, weights=None, resolution=size, batch_size=batch, optimizer="sgd",
                         learning_rate=0.01)
    trainer = Trainer(config, num_classes=10)
    trainer.set_train_data(TrainSet(x_uint8, y))
    trainer.train_for(3600, max_steps=2)  # warm-up
    start = time.perf_counter()
    done = trainer.train_for(3600, max_steps=steps).steps  # one slice of `steps` steps, as in real use
    ours_train = done * batch / (time.perf_counter() - start)
    ours_predict = timed(lambda: trainer.predict(x_uint8[:batch], batch_size=batch), steps, batch)

    model = trainer.model  # same weights and layout; bare loops around it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    target = torch.arange(batch) % 10

    def bare_step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def bare_forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return ours_train, timed(bare_step, steps, batch), ours_predict, timed(bare_forward, steps, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(list_backbones()))
    parser.add_argument("--sizes", default="64,112")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"learner throughput, batch {args.batch}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print("| backbone | px | train ours (img/s) | train bare (img/s) | ratio | predict ours (img/s) "
          "| predict bare (img/s) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.backbones.split(","):
        for size in map(int, args.sizes.split(",")):
            size = max(size, get_spec(name).min_size)
            tr, tb, pr, pb = measure(name, size, args.batch, args.steps)
            print(f"| {name} | {size} | {tr:.0f} | {tb:.0f} | {tr / tb:.2f} | {pr:.0f} | {pb:.0f} | {pr / pb:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
