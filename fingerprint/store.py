"""The known-dataset store: per dataset, N feature vectors (float16) and simple meta-features.

One compressed `.npz` file; a JSON header names the extractor (backbone, weights digest,
resolution, feature dimension) and the meta-features. It is read with `allow_pickle=False`,
so loading a store never executes code from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from fingerprint.extractor import ExtractorInfo

__all__ = ["META_FEATURES", "StoreError", "DatasetEntry", "Store", "meta_features_of"]

FORMAT_VERSION = 1
META_FEATURES = ("classes", "channels", "height", "width", "train_size", "sequence_length", "multilabel")


class StoreError(ValueError):
    """A store file is empty, unreadable, or built with another extractor."""


@dataclass
class DatasetEntry:
    name: str
    features: np.ndarray  # float16 [N, D]
    meta: dict[str, float] = field(default_factory=dict)


def meta_features_of(metadata: object, train_labels: np.ndarray | None = None, image_size: tuple[int, int] | None = None
                     ) -> dict[str, float]:
    """Simple meta-features from an AutoDL metadata object (and, when known, labels and image size)."""
    seq, row, col, channels = metadata.get_tensor_shape()
    if image_size is not None:
        row, col = image_size
    multilabel = 0.0
    if train_labels is not None and len(train_labels):
        multilabel = float(np.any((train_labels > 0).sum(1) != 1))
    return {"classes": float(metadata.get_output_size()), "channels": float(channels), "height": float(row),
            "width": float(col), "train_size": float(metadata.size()), "sequence_length": float(seq),
            "multilabel": multilabel}


class Store:
    """Known datasets' fingerprints, all from one extractor."""

    def __init__(self, info: ExtractorInfo, entries: list[DatasetEntry] | None = None):
        self.info = info
        self.entries: dict[str, DatasetEntry] = {}
        for entry in entries or []:
            self.add(entry)

    def add(self, entry: DatasetEntry) -> None:
        if entry.features.ndim != 2 or entry.features.shape[1] != self.info.feature_dim:
            raise StoreError(f"dataset {entry.name!r}: features of shape {entry.features.shape}, "
                             f"expected [N, {self.info.feature_dim}]")
        if len(entry.features) == 0:
            raise StoreError(f"dataset {entry.name!r}: no feature vectors")
        missing = set(META_FEATURES) - set(entry.meta)
        if missing:
            raise StoreError(f"dataset {entry.name!r}: meta-features missing: {', '.join(sorted(missing))}")
        self.entries[entry.name] = DatasetEntry(entry.name, entry.features.astype(np.float16), dict(entry.meta))

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def without(self, *names: str) -> Store:
        """A copy without these datasets (leave-one-dataset-out, or a whole family)."""
        return Store(self.info, [e for n, e in self.entries.items() if n not in names])

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """All feature vectors (float32) and their dataset names."""
        x = np.concatenate([e.features.astype(np.float32) for e in self.entries.values()])
        y = np.concatenate([[n] * len(e.features) for n, e in self.entries.items()])
        return x, y

    def meta_table(self) -> tuple[np.ndarray, list[str]]:
        return np.array([[e.meta[k] for k in META_FEATURES] for e in self.entries.values()], np.float64), self.names

    def check_compatible(self, info: ExtractorInfo) -> None:
        if info != self.info:
            raise StoreError(f"store built with {self.info}, but the features come from {info}; "
                             "rebuild the store with the same extractor")

    def save(self, path: str) -> None:
        if not self.entries:
            raise StoreError("refusing to save an empty store")
        header = {"format_version": FORMAT_VERSION, "extractor": asdict(self.info),
                  "datasets": [{"name": e.name, "meta": e.meta} for e in self.entries.values()]}
        arrays = {f"features_{i}": e.features for i, e in enumerate(self.entries.values())}
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, header=np.array(json.dumps(header)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, *, expect: ExtractorInfo | None = None) -> Store:
        """Read a store (no pickles); with `expect`, insist it was built by that extractor."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                features = [data[f"features_{i}"] for i in range(len(header["datasets"]))]
        except FileNotFoundError:
            raise StoreError(f"{path}: store file not found") from None
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: not a fingerprint store ({exc})") from exc
        if header.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path}: store format {header.get('format_version')} (expected {FORMAT_VERSION})")
        if not header["datasets"]:
            raise StoreError(f"{path}: the store holds no dataset")
        store = cls(ExtractorInfo(**header["extractor"]))
        try:
            for item, feats in zip(header["datasets"], features):
                store.add(DatasetEntry(item["name"], feats, item["meta"]))
        except StoreError as exc:
            raise StoreError(f"{path}: {exc}") from exc
        if expect is not None:
            store.check_compatible(expect)
        return store
