"""Pretrain a backbone on the union of AutoDL datasets (the paper's "pretrained on X" option).

    python -m learner.pretrain --dataset DIR [DIR ...] --backbone NAME --minutes M --out FILE
                               [--resolution 64] [--init FILE] [--max-per-dataset N] [--fp16]

Each dataset's classes get their own output block (labels are offset), grayscale images are
repeated to three channels and a clip contributes its middle frame. The saved file is the
backbone's state dict without classifier, loadable by `get_backbone(..., weights_file=FILE)`;
on a machine without ImageNet weights this is how backbones get non-random weights.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

from learner import _triton_guard  # noqa: F401  (before torch)

from learner.backbones import load_body_weights, list_backbones  # noqa: E402
from learner.config import TrainConfig  # noqa: E402
from learner.data import TrainSet, stratified_split  # noqa: E402
from learner.trainer import Trainer  # noqa: E402
from learner.weights import save_state_dict  # noqa: E402

__all__ = ["load_union", "pretrain", "main"]

logger = logging.getLogger(__name__)


def load_union(dataset_dirs: list[str], *, resolution: int, max_per_dataset: int | None,
               max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Train splits of several AutoDL datasets as one uint8 `[N,1,H,W,3]` array with offset labels."""
    from metadata.arrays import to_arrays
    from metadata.check import find_dataset
    from metadata.reader import AutoDLDataset

    xs, ys, names = [], [], []
    for directory in dataset_dirs:
        name, data_dir = find_dataset(directory)
        arrays = to_arrays(AutoDLDataset(os.path.join(data_dir, "train")), size=(resolution, resolution),
                           max_samples=max_per_dataset, max_bytes=max_bytes)
        x = arrays.x[:, arrays.x.shape[1] // 2: arrays.x.shape[1] // 2 + 1]  # middle frame of clips
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        xs.append(x)
        ys.append(arrays.y)
        names.append(name)
        logger.info("[pretrain] %s: %d samples, %d classes", name, len(x), arrays.y.shape[1])
    k = sum(y.shape[1] for y in ys)
    y_all = np.zeros((sum(len(y) for y in ys), k), dtype=np.float32)
    row = col = 0
    for y in ys:
        y_all[row:row + len(y), col:col + y.shape[1]] = y
        row, col = row + len(y), col + y.shape[1]
    return np.concatenate(xs), y_all, names


def pretrain(dataset_dirs: list[str], backbone: str, minutes: float, out: str, *, resolution: int = 64,
             init: str | None = None, max_per_dataset: int | None = None, batch_size: int = 64,
             learning_rate: float = 1e-3, fp16: bool = False, seed: int = 0, progress: bool = True) -> dict:
    """Train `backbone` for `minutes` on the union; save its body; return a summary."""
    from tqdm import tqdm

    from scoring.metrics import nauc

    x, y, names = load_union(dataset_dirs, resolution=resolution, max_per_dataset=max_per_dataset)
    train_idx, val_idx = stratified_split(y, 0.1, seed)
    config = TrainConfig(backbone=backbone, weights=None, optimizer="adam", learning_rate=learning_rate,
                         batch_size=batch_size, dropout=0.2, resolution=resolution, name="pretrain")
    trainer = Trainer(config, num_classes=y.shape[1], seed=seed)
    if init is not None:
        load_body_weights(trainer.model.body, trainer.model.spec, init)
    trainer.set_train_data(TrainSet(x[train_idx], y[train_idx], seed=seed))
    total = minutes * 60.0
    start = time.time()
    score = float("nan")
    with tqdm(total=round(total), unit="s", desc=f"pretrain {backbone}", disable=not progress) as bar:
        while (left := total - (time.time() - start)) > 1:
            stats = trainer.train_for(min(60.0, left))
            score = nauc(y[val_idx], trainer.predict(x[val_idx]))
            bar.update(round(stats.seconds))
            bar.set_postfix(loss=f"{stats.loss:.3f}", val_nauc=f"{score:.3f}")
    save_state_dict(trainer.model.body.state_dict(), out, fp16=fp16)
    return {"datasets": names, "samples": len(x), "classes": y.shape[1], "steps": trainer.total_steps,
            "val_nauc": score, "out": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learner.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", required=True, help="AutoDL dataset folders")
    parser.add_argument("--backbone", required=True, choices=list_backbones())
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--init", help="start from this weights file")
    parser.add_argument("--max-per-dataset", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.path.exists(args.out):
        print(f"error: {args.out} exists; choose another --out (nothing is overwritten)", file=sys.stderr)
        return 2
    summary = pretrain(args.dataset, args.backbone, args.minutes, args.out, resolution=args.resolution,
                       init=args.init, max_per_dataset=args.max_per_dataset, batch_size=args.batch_size,
                       learning_rate=args.lr, fp16=args.fp16, seed=args.seed)
    print(f"saved {summary['out']}: {summary['steps']} steps on {summary['samples']} samples of "
          f"{', '.join(summary['datasets'])} ({summary['classes']} classes), validation NAUC {summary['val_nauc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
