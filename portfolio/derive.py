"""Derived known datasets in the manner of ZAP: many meta-training datasets from a few real ones.

    python -m portfolio.derive --sources runs/meta/datasets --out runs/meta/derived [--holdout hoda,weather]
                               [--recipe default] [--size 64]

Every source dataset (AutoDL format, one folder each under --sources) gives one derived dataset per
entry of the recipe: a subset of its classes, a training set of a few samples per class, a lower
resolution, grayscale, clips that pan and zoom across its images. Each kind is a registered
function of (splits, rng, **params); a recipe is data (a tuple of `Derivation`s). Everything is
seeded by the derived dataset's name, so the same command writes the same datasets. A source named
in --holdout contributes nothing (it is evaluated as unseen), and `derived.json` names each derived
dataset's source (its family), so that leave-one-dataset-out can leave out a whole family. Existing
outputs are kept (the command resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Splits", "Derivation", "RECIPES", "register_derivation", "list_derivations", "derive", "derive_all",
           "read_splits", "pan_clips", "main"]


@dataclass
class Splits:
    """A dataset in memory: uint8 `[N, T, H, W, C]` frames and class indices per split, and class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    names: list[str] = field(default_factory=list)


Transform = Callable[..., Splits | None]  # (splits, rng, **params) -> derived splits, or None: not applicable
_KINDS: dict[str, Transform] = {}


def register_derivation(name: str) -> Callable[[Transform], Transform]:
    def add(fn: Transform) -> Transform:
        if name in _KINDS:
            raise ValueError(f"derivation {name!r} is already registered")
        _KINDS[name] = fn
        return fn

    return add


def list_derivations() -> list[str]:
    return sorted(_KINDS)


@dataclass(frozen=True)
class Derivation:
    """One registered kind with its parameters; `suffix` names the derived dataset (`<source>-<suffix>`)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown derivation {self.kind!r}; registered: {', '.join(list_derivations())}")

    @property
    def suffix(self) -> str:
        return "-".join([self.kind, *(str(v) for _, v in self.params)])


def _select(splits: Splits, keep_train: np.ndarray, keep_test: np.ndarray) -> Splits:
    return Splits(splits.x_train[keep_train], splits.y_train[keep_train], splits.x_test[keep_test],
                  splits.y_test[keep_test], list(splits.names))


@register_derivation("classes")
def _classes(splits: Splits, rng: np.random.Generator, *, share: float = 0.5) -> Splits | None:
    """A random subset of the classes (at least 2), relabelled 0..k-1."""
    n = int(max(splits.y_train.max(), splits.y_test.max())) + 1
    k = max(2, int(round(share * n)))
    if k >= n:
        return None
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    relabel = np.full(n, -1)
    relabel[chosen] = np.arange(k)
    out = _select(splits, np.flatnonzero(relabel[splits.y_train] >= 0), np.flatnonzero(relabel[splits.y_test] >= 0))
    out.y_train, out.y_test = relabel[out.y_train], relabel[out.y_test]
    out.names = [splits.names[c] for c in chosen] if splits.names else []
    return out


@register_derivation("shots")
def _shots(splits: Splits, rng: np.random.Generator, *, per_class: int = 10) -> Splits | None:
    """At most `per_class` training samples per class (the test split unchanged)."""
    keep = [rng.permutation(np.flatnonzero(splits.y_train == c))[:per_class] for c in np.unique(splits.y_train)]
    keep_train = np.sort(np.concatenate(keep))
    if len(keep_train) == len(splits.y_train):
        return None
    return _select(splits, keep_train, np.arange(len(splits.y_test)))


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    n, t, h, w, c = x.shape
    frames = tf.image.resize(x.reshape(n * t, h, w, c).astype(np.float32), (size, size), antialias=True).numpy()
    return np.clip(np.round(frames), 0, 255).astype(np.uint8).reshape(n, t, size, size, c)


@register_derivation("lowres")
def _lowres(splits: Splits, rng: np.random.Generator, *, size: int = 16) -> Splits | None:
    """Every frame downsampled to `size` × `size`."""
    if min(splits.x_train.shape[2:4]) <= size:
        return None
    return Splits(_resize(splits.x_train, size), splits.y_train, _resize(splits.x_test, size), splits.y_test,
                  list(splits.names))


@register_derivation("gray")
def _gray(splits: Splits, rng: np.random.Generator) -> Splits | None:
    """Luminance only (ITU-R 601 weights); not applicable to data that are grayscale already."""
    if splits.x_train.shape[-1] != 3:
        return None
    weights = np.array([0.299, 0.587, 0.114], np.float32)

    def luminance(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x.astype(np.float32) @ weights), 0, 255).astype(np.uint8)[..., None]

    return Splits(luminance(splits.x_train), splits.y_train, luminance(splits.x_test), splits.y_test,
                  list(splits.names))


def pan_clips(images: np.ndarray, rng: np.random.Generator, *, frames: int = 8, size: int = 48) -> np.ndarray:
    """uint8 `[N, frames, size, size, C]` clips of a window (50-90 % of the side) that moves and zooms across
    each of the uint8 `[N, H, W, C]` images."""
    import tensorflow as tf

    n = len(images)
    side0, side1 = rng.uniform(0.5, 0.9, n), rng.uniform(0.5, 0.9, n)
    y0, x0 = rng.uniform(0, 1 - side0), rng.uniform(0, 1 - side0)
    y1, x1 = rng.uniform(0, 1 - side1), rng.uniform(0, 1 - side1)
    t = np.linspace(0, 1, frames)[None, :]
    ys, xs = y0[:, None] * (1 - t) + y1[:, None] * t, x0[:, None] * (1 - t) + x1[:, None] * t
    sides = side0[:, None] * (1 - t) + side1[:, None] * t
    boxes = np.stack([ys, xs, ys + sides, xs + sides], -1).reshape(-1, 4)
    index = np.repeat(np.arange(n), frames)
    clips = tf.image.crop_and_resize(images.astype(np.float32), boxes, index, (size, size)).numpy()
    return np.clip(np.round(clips), 0, 255).astype(np.uint8).reshape(n, frames, size, size, -1)


@register_derivation("clips")
def _clips(splits: Splits, rng: np.random.Generator, *, frames: int = 8, size: int = 48) -> Splits | None:
    """Clips panning and zooming across the images (image data only)."""
    if splits.x_train.shape[1] != 1:
        return None
    return Splits(pan_clips(splits.x_train[:, 0], rng, frames=frames, size=size), splits.y_train,
                  pan_clips(splits.x_test[:, 0], rng, frames=frames, size=size), splits.y_test, list(splits.names))


RECIPES: dict[str, tuple[Derivation, ...]] = {
    # five derived datasets per source (fewer where a kind does not apply, e.g. gray on grayscale data):
    # the bundle's 8 pool sources give 36 derived datasets, 44 known datasets with them
    "default": (Derivation("classes", (("share", 0.5),)), Derivation("shots", (("per_class", 10),)),
                Derivation("lowres", (("size", 16),)), Derivation("gray"),
                Derivation("clips", (("frames", 8), ("size", 48)))),
}


def read_splits(path: str, size: int) -> Splits:
    """An AutoDL dataset folder read into memory at `size` px (test labels from its solution file)."""
    from metadata.arrays import to_arrays
    from metadata.check import find_dataset
    from metadata.reader import AutoDLDataset

    name, data_dir = find_dataset(path)
    train = to_arrays(AutoDLDataset(os.path.join(data_dir, "train")), size=(size, size))
    test = to_arrays(AutoDLDataset(os.path.join(data_dir, "test")), size=(size, size))
    root = os.path.dirname(data_dir)
    solution = np.loadtxt(os.path.join(root, f"{name}.solution"), ndmin=2)
    if ((train.y > 0).sum(1) != 1).any() or ((solution > 0).sum(1) != 1).any():
        raise ValueError(f"{path}: multilabel data cannot be derived from (one class per sample expected)")
    names_file = os.path.join(root, f"{name}_label.name")
    names = [line.strip() for line in open(names_file)] if os.path.exists(names_file) else []
    return Splits(train.x, train.y.argmax(1), test.x, solution.argmax(1), names)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def derive(splits: Splits, derivation: Derivation, name: str) -> Splits | None:
    """The derived dataset `name` (seeded by its name), or None when the kind does not apply."""
    rng = np.random.default_rng(_seed(name))
    return _KINDS[derivation.kind](splits, rng, **dict(derivation.params))


def derive_all(sources: dict[str, str], out: str, *, recipe: tuple[Derivation, ...] = RECIPES["default"],
               holdout: tuple[str, ...] = (), size: int = 64, progress: bool = True) -> list[dict[str, str]]:
    """Write every derived dataset of every source not held out under `out`; returns and writes the list
    (`derived.json`: name, source, derivation, path). Existing outputs are kept."""
    from metadata.convert import convert_arrays

    unknown = sorted(set(holdout) - set(sources))
    if unknown:
        raise ValueError(f"--holdout names no source: {', '.join(unknown)} (sources: {', '.join(sorted(sources))})")
    os.makedirs(out, exist_ok=True)
    entries = []
    for source in sorted(set(sources) - set(holdout)):
        splits: Splits | None = None
        for derivation in recipe:
            name = f"{source}-{derivation.suffix}"
            target = os.path.join(out, name)
            entry = {"name": name, "source": source, "derivation": derivation.suffix, "path": target}
            if os.path.isdir(os.path.join(target, f"{name}.data")):
                entries.append(entry)
                continue
            if splits is None:
                splits = read_splits(sources[source], size)
            derived = derive(splits, derivation, name)
            if derived is None:
                if progress:
                    print(f"[derive] {name}: does not apply, skipped", flush=True)
                continue
            convert_arrays(derived.x_train, derived.y_train, derived.x_test, derived.y_test, target, name=name,
                           label_names=derived.names or None,
                           output_dim=len(derived.names) or int(max(derived.y_train.max(), derived.y_test.max())) + 1,
                           seed=_seed(name) % 2**31, progress=False,
                           source=f"{source} ({derivation.suffix})")
            if progress:
                print(f"[derive] {name}: {len(derived.y_train)} train / {len(derived.y_test)} test, "
                      f"shape {derived.x_train.shape[1:]}", flush=True)
            entries.append(entry)
    with open(os.path.join(out, "derived.json"), "w") as f:
        json.dump(entries, f, indent=1)
    return entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.derive", description=__doc__.splitlines()[0])
    p.add_argument("--sources", required=True, help="folder of AutoDL datasets, one subfolder each")
    p.add_argument("--out", required=True)
    p.add_argument("--holdout", default="", help="comma-separated sources that contribute nothing")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    p.add_argument("--size", type=int, default=64, help="side at which sources are read")
    args = p.parse_args(argv)
    root = Path(args.sources)
    sources = {d.name: str(d) for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.data"))}
    if not sources:
        print(f"error: {root}: no AutoDL dataset folders", file=sys.stderr)
        return 2
    try:
        entries = derive_all(sources, args.out, recipe=RECIPES[args.recipe],
                             holdout=tuple(h for h in args.holdout.split(",") if h), size=args.size)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(entries)} derived datasets from {len(sources) - len(set(args.holdout.split(',')) & set(sources))} "
          f"sources: {args.out}/derived.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
