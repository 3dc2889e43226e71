"""Convert image folders, numpy arrays, video frame folders and TFDS datasets to AutoDL format.

    python -m metadata.convert folders SRC OUT [--name N] [--test-fraction 0.2] [--seed 0]
    python -m metadata.convert npz FILE.npz OUT [--name N]
    python -m metadata.convert videos SRC OUT [--frames T]
    python -m metadata.convert tfds DATASET OUT [--data-dir D] [--train-split train --test-split test]

Common options: --format compressed|dense, --shards K, --overwrite, --classes a,b,c,
--max-per-class N, --no-progress. OUT is the dataset folder (it receives `<name>.data/`,
`<name>.solution`, ...); it is never replaced unless --overwrite is given.

Folder layouts: `SRC/<class>/<file>` (a stratified test split is drawn) or
`SRC/{train,test}/<class>/<file>`. Videos: `SRC/<class>/<clip>/<frame>` (or under train/test),
frames in natural name order, each clip resampled uniformly to the same number of frames.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from metadata.errors import AutoDLDataError, SourceError
from metadata.writer import DatasetSummary, Example, write_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "scan_class_folders",
    "stratified_split",
    "convert_image_folders",
    "convert_video_folders",
    "convert_arrays",
    "convert_npz",
    "convert_tfds",
    "main",
]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
Item = tuple[str, int]  # (path, class index)


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _listdir(path: str) -> list[str]:
    try:
        return sorted((e for e in os.listdir(path) if not e.startswith(".")), key=_natural_key)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read folder ({exc.strerror})") from exc


def _has_split_layout(src: str) -> bool:
    entries = set(_listdir(src))
    return {"train", "test"} <= entries and all(os.path.isdir(os.path.join(src, e)) for e in ("train", "test"))


def scan_class_folders(root: str, classes: Sequence[str], *, videos: bool = False,
                       max_per_class: int | None = None) -> list[Item]:
    """Items under `root/<class>/`: image files, or clip folders when `videos`."""
    items: list[Item] = []
    for index, cls in enumerate(classes):
        folder = os.path.join(root, cls)
        if not os.path.isdir(folder):
            continue  # a class may be absent from one split
        found = []
        for entry in _listdir(folder):
            path = os.path.join(folder, entry)
            if videos and os.path.isdir(path):
                found.append(path)
            elif not videos and os.path.splitext(entry)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(path):
                found.append(path)
        if max_per_class is not None:
            found = found[:max_per_class]
        items.extend((p, index) for p in found)
    return items


def _class_names(roots: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    names: set[str] = set()
    for root in roots:
        names.update(e for e in _listdir(root) if os.path.isdir(os.path.join(root, e)))
    if not names:
        raise SourceError(f"{roots[0]}: no class folders found (expected SRC/<class>/...)")
    if wanted:
        missing = [c for c in wanted if c not in names]
        if missing:
            raise SourceError(f"{roots[0]}: no class folder named {', '.join(missing)}")
        return list(wanted)
    return sorted(names, key=_natural_key)


def stratified_split(items: Sequence[Item], test_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split per class: round(fraction * n) to test, at least one when the class has two or more."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = random.Random(seed)
    by_class: dict[int, list[Item]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    train, test = [], []
    for cls in sorted(by_class):
        group = list(by_class[cls])
        rng.shuffle(group)
        n_test = round(test_fraction * len(group))
        if len(group) >= 2:
            n_test = min(max(n_test, 1), len(group) - 1)
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return train, test


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from exc


def _image_examples(items: Sequence[Item]) -> Iterator[Example]:
    for path, label in items:
        yield Example(frames=[_read_bytes(path)], labels=(label,), source=path)


def _resample(n_frames: int, length: int) -> np.ndarray:
    """Indices of `length` frames spread uniformly over a clip of `n_frames`."""
    return np.round(np.linspace(0, n_frames - 1, length)).astype(int)


def _clip_frames(clip: str) -> list[str]:
    frames = [os.path.join(clip, e) for e in _listdir(clip)
              if os.path.splitext(e)[1].lower() in IMAGE_EXTENSIONS]
    if not frames:
        raise SourceError(f"{clip}: clip folder holds no frame images")
    return frames


def _video_examples(items: Sequence[Item], length: int) -> Iterator[Example]:
    for clip, label in items:
        frames = _clip_frames(clip)
        yield Example(frames=[_read_bytes(frames[i]) for i in _resample(len(frames), length)],
                      labels=(label,), source=clip)


def _shuffled(items: Sequence[Item], seed: int) -> list[Item]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def _folder_items(src: str, *, videos: bool, test_fraction: float, seed: int,
                  classes: Sequence[str] | None, max_per_class: int | None) -> tuple[list[str], list[Item], list[Item]]:
    if not os.path.isdir(src):
        raise SourceError(f"{src}: source folder does not exist or is not a folder")
    if _has_split_layout(src):
        roots = [os.path.join(src, "train"), os.path.join(src, "test")]
        names = _class_names(roots, classes)
        train = scan_class_folders(roots[0], names, videos=videos, max_per_class=max_per_class)
        test_cap = None if max_per_class is None else max(1, round(max_per_class * 0.25))
        test = scan_class_folders(roots[1], names, videos=videos, max_per_class=test_cap)
    else:
        names = _class_names([src], classes)
        items = scan_class_folders(src, names, videos=videos, max_per_class=max_per_class)
        train, test = stratified_split(items, test_fraction, seed)
    what = "clip folders" if videos else "image files"
    if not train:
        raise SourceError(f"{src}: no {what} found for the train split")
    if not test:
        raise SourceError(f"{src}: no {what} found for the test split")
    empty = [n for i, n in enumerate(names) if not any(label == i for _, label in train)]
    if empty:
        raise SourceError(f"{src}: class folder(s) without {what} in the train split: {', '.join(empty)}")
    return names, _shuffled(train, seed), _shuffled(test, seed + 1)


def convert_image_folders(src: str, out: str, *, name: str | None = None, test_fraction: float = 0.2,
                          seed: int = 0, classes: Sequence[str] | None = None,
                          max_per_class: int | None = None, fmt: str = "compressed", shards: int = 1,
                          overwrite: bool = False, progress: bool = True) -> DatasetSummary:
    """Convert `SRC/<class>/*` or `SRC/{train,test}/<class>/*` image folders.

    With `max_per_class`, at most that many train images per class are taken (and a quarter as
    many test images when the source has its own test folder).
    """
    names, train, test = _folder_items(src, videos=False, test_fraction=test_fraction, seed=seed,
                                       classes=classes, max_per_class=max_per_class)
    return write_dataset(out, name or _default_name(out), _image_examples(train), _image_examples(test),
                         output_dim=len(names), label_names=names, fmt=fmt, shards=shards,
                         overwrite=overwrite, progress=progress, total=(len(train), len(test)))


def convert_video_folders(src: str, out: str, *, name: str | None = None, frames: int | None = None,
                          test_fraction: float = 0.2, seed: int = 0, classes: Sequence[str] | None = None,
                          max_per_class: int | None = None, fmt: str = "compressed", shards: int = 1,
                          overwrite: bool = False, progress: bool = True) -> DatasetSummary:
    """Convert clips stored as folders of frame images; every clip is resampled to `frames`
    frames (default: the median clip length)."""
    names, train, test = _folder_items(src, videos=True, test_fraction=test_fraction, seed=seed,
                                       classes=classes, max_per_class=max_per_class)
    if frames is None:
        frames = int(np.median([len(_clip_frames(c)) for c, _ in train + test]))
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return write_dataset(out, name or _default_name(out), _video_examples(train, frames),
                         _video_examples(test, frames), output_dim=len(names), label_names=names,
                         fmt=fmt, shards=shards, overwrite=overwrite, progress=progress,
                         total=(len(train), len(test)))


def _label_lists(y: np.ndarray, where: str) -> tuple[list[tuple[int, ...]], int]:
    y = np.asarray(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        y = y.reshape(-1)
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise SourceError(f"{where}: class indices must be integers")
        if len(y) and y.min() < 0:
            raise SourceError(f"{where}: negative class index {int(y.min())}")
        return [(int(v),) for v in y], int(y.max()) + 1 if len(y) else 0
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise SourceError(f"{where}: a 2-D label matrix must hold only 0 and 1")
        return [tuple(int(k) for k in np.flatnonzero(row)) for row in y], y.shape[1]
    raise SourceError(f"{where}: labels must be class indices [N] or a 0/1 matrix [N, K], got shape {y.shape}")


def convert_arrays(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   out: str, *, name: str, label_names: Sequence[str] | None = None,
                   output_dim: int | None = None, seed: int = 0, fmt: str = "compressed", shards: int = 1,
                   overwrite: bool = False, progress: bool = True, source: str = "arrays") -> DatasetSummary:
    """Convert in-memory arrays.

    `x`: `[N, H, W]` (grayscale), `[N, H, W, C]` (C = 1 or 3) or `[N, T, H, W, C]` (video),
    uint8 0..255 or float in [0, 1]. `y`: class indices `[N]` (multiclass) or a 0/1 matrix
    `[N, K]` (multilabel, or one-hot). Train samples are shuffled with `seed`.
    """
    splits = {}
    dims = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x)
        if x.ndim not in (3, 4, 5):
            raise SourceError(f"{source}: x_{split} must be [N,H,W], [N,H,W,C] or [N,T,H,W,C], got shape {x.shape}")
        if x.ndim == 4 and x.shape[-1] not in (1, 3):
            raise SourceError(f"{source}: x_{split} has {x.shape[-1]} channels; images need 1 or 3 "
                              "(for video pass [N,T,H,W,C])")
        labels, k = _label_lists(y, f"{source}: y_{split}")
        if len(labels) != len(x):
            raise SourceError(f"{source}: x_{split} has {len(x)} samples but y_{split} has {len(labels)}")
        splits[split] = (x, labels)
        dims.append(k)
    k = output_dim or (len(label_names) if label_names is not None else max(dims))
    order = np.random.default_rng(seed).permutation(len(splits["train"][0]))

    def examples(split: str, idx: Sequence[int]) -> Iterator[Example]:
        x, labels = splits[split]
        for i in idx:
            yield Example(frames=x[i], labels=labels[i], source=f"{source}: x_{split}[{i}]")

    return write_dataset(out, name, examples("train", order), examples("test", range(len(splits["test"][0]))),
                         output_dim=k, label_names=label_names, fmt=fmt, shards=shards, overwrite=overwrite,
                         progress=progress, total=(len(order), len(splits["test"][0])))


def convert_npz(path: str, out: str, *, name: str | None = None, **kwargs: object) -> DatasetSummary:
    """Convert a `.npz` with `x_train, y_train, x_test, y_test` (and optional `class_names`)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read numpy archive ({exc})") from exc
    with data:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data.files]
        if missing:
            raise SourceError(f"{path}: missing array(s) {', '.join(missing)} (found {', '.join(data.files)})")
        names = [str(s) for s in data["class_names"]] if "class_names" in data.files else None
        arrays = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    return convert_arrays(*arrays, out, name=name or _default_name(out), label_names=names,
                          source=path, **kwargs)  # type: ignore[arg-type]


def convert_tfds(dataset: str, out: str, *, name: str | None = None, data_dir: str | None = None,
                 train_split: str = "train", test_split: str = "test", image_key: str = "image",
                 label_key: str = "label", max_train: int | None = None, max_test: int | None = None,
                 seed: int = 0, fmt: str = "compressed", shards: int = 1, overwrite: bool = False,
                 progress: bool = True) -> DatasetSummary:
    """Convert a TensorFlow Datasets image classification dataset (needs `tensorflow-datasets`).

    Encoded images are taken without decoding (`SkipDecoding`), so JPEG/PNG bytes are stored as
    TFDS holds them. Train samples are shuffled with `seed`.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise SourceError("tfds conversion needs the 'tensorflow-datasets' package") from exc
    builder = tfds.builder(dataset, data_dir=data_dir)
    features = builder.info.features
    if image_key not in features or label_key not in features:
        raise SourceError(f"tfds:{dataset}: needs features {image_key!r} and {label_key!r}, "
                          f"has {', '.join(features.keys())}")
    label_feature = features[label_key]
    k = int(label_feature.num_classes)
    names = list(label_feature.names) if getattr(label_feature, "names", None) else None
    builder.download_and_prepare()

    def load(split: str, limit: int | None, shuffle: bool) -> list[Example]:
        ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()})
        rows = []
        for i, row in enumerate(tfds.as_numpy(ds)):
            if limit is not None and i >= limit:
                break
            rows.append(Example(frames=[bytes(row[image_key])], labels=(int(row[label_key]),),
                                source=f"tfds:{dataset}/{split}[{i}]"))
        if shuffle:
            random.Random(seed).shuffle(rows)
        return rows

    train, test = load(train_split, max_train, True), load(test_split, max_test, False)
    return write_dataset(out, name or _default_name(out), train, test, output_dim=k, label_names=names,
                         fmt=fmt, shards=shards, overwrite=overwrite, progress=progress,
                         total=(len(train), len(test)))


def _default_name(out: str) -> str:
    return os.path.basename(os.path.normpath(out))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metadata.convert",
                                     description="Convert data to the AutoDL format.")
    sub = parser.add_subparsers(dest="kind", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("out", help="dataset folder to create")
        p.add_argument("--name", help="dataset name (default: the OUT folder's name)")
        p.add_argument("--format", dest="fmt", choices=("compressed", "dense"), default="compressed")
        p.add_argument("--shards", type=int, default=1, help="TFRecord files per split")
        p.add_argument("--seed", type=int, default=0, help="seed of the train shuffle and test split")
        p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
        p.add_argument("--no-progress", action="store_true")

    for kind, help_text in (("folders", "image class folders"), ("videos", "folders of frame images")):
        p = sub.add_parser(kind, help=help_text)
        p.add_argument("src")
        common(p)
        p.add_argument("--test-fraction", type=float, default=0.2)
        p.add_argument("--classes", help="comma-separated subset of class folders")
        p.add_argument("--max-per-class", type=int)
        if kind == "videos":
            p.add_argument("--frames", type=int, help="frames per clip (default: median length)")
    p = sub.add_parser("npz", help="x_train/y_train/x_test/y_test arrays")
    p.add_argument("src")
    common(p)
    p = sub.add_parser("tfds", help="a TensorFlow Datasets name")
    p.add_argument("src", metavar="DATASET")
    common(p)
    p.add_argument("--data-dir")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--max-train", type=int)
    p.add_argument("--max-test", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    common = dict(name=args.name, fmt=args.fmt, shards=args.shards, overwrite=args.overwrite,
                  progress=not args.no_progress, seed=args.seed)
    try:
        if args.kind in ("folders", "videos"):
            extra = dict(test_fraction=args.test_fraction, max_per_class=args.max_per_class,
                         classes=args.classes.split(",") if args.classes else None)
            if args.kind == "folders":
                summary = convert_image_folders(args.src, args.out, **common, **extra)
            else:
                summary = convert_video_folders(args.src, args.out, frames=args.frames, **common, **extra)
        elif args.kind == "npz":
            summary = convert_npz(args.src, args.out, **common)
        else:
            summary = convert_tfds(args.src, args.out, data_dir=args.data_dir, train_split=args.train_split,
                                   test_split=args.test_split, max_train=args.max_train,
                                   max_test=args.max_test, **common)
    except (AutoDLDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {summary.path}: {summary.name}, {summary.output_dim} classes, "
          f"train {summary.train.count}, test {summary.test.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
