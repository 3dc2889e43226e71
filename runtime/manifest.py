"""The bundled portfolio folder: what `model.py` loads at run time (written offline by `portfolio.meta_train`).

```
manifest.json   fingerprint network, probe network (and its companions), store, selector, dataset -> configuration, default, unsafe
configs/*.json  TrainConfig records (and optional per-configuration run-time settings files)
store.npz       fingerprint store          selector.npz   fitted selector
weights/        <backbone>-<id>.pt files used by the configurations and the fingerprint and probe networks
```
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MANIFEST", "ManifestError", "FingerprintSpec", "Manifest"]

MANIFEST = "manifest.json"
VERSION = 1


class ManifestError(ValueError):
    """The bundled portfolio is missing, damaged or inconsistent (names the part)."""


@dataclass(frozen=True)
class FingerprintSpec:
    """A frozen feature extractor: the fingerprint network, or the probe's."""

    backbone: str
    weights: str | None  # file name in weights/, None for seeded random weights
    resolution: int
    frames: int = 4
    seed: int = 0


@dataclass
class Manifest:
    """Index of a bundled portfolio (all paths relative to its folder)."""

    fingerprint: FingerprintSpec
    store: str
    selector: str
    configs: dict[str, str]           # known dataset -> configuration file
    default: str                      # configuration file used when selection is off or impossible
    unsafe: list[str] = field(default_factory=list)  # configuration files that crashed in the matrix
    info: dict[str, Any] = field(default_factory=dict)
    # features of the first prediction's linear probe; None: the fingerprint features. The network that
    # best tells datasets apart need not be the one whose features classify best (ImageNet weights).
    probe: FingerprintSpec | None = None
    # configuration file -> its own run-time settings file (a JSON object of `MEMBER_FIELDS`), for the
    # members tuned as whole pipelines
    settings: dict[str, str] = field(default_factory=dict)
    # more frozen networks whose features, concatenated with the probe's at its top rung, give a better
    # probe once the climb ends (`RuntimeSettings.probe_companions`)
    companions: list[FingerprintSpec] = field(default_factory=list)
    version: int = VERSION

    def save(self, folder: str) -> None:
        data = asdict(self)
        with open(os.path.join(folder, MANIFEST), "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def load(cls, folder: str) -> Manifest:
        path = os.path.join(folder, MANIFEST)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ManifestError(f"{path}: bundled portfolio manifest not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: unreadable manifest ({exc})") from exc
        try:
            if data.get("version") != VERSION:
                raise ManifestError(f"{path}: manifest version {data.get('version')} (expected {VERSION})")
            manifest = cls(fingerprint=FingerprintSpec(**data["fingerprint"]), store=data["store"],
                           selector=data["selector"], configs=dict(data["configs"]), default=data["default"],
                           unsafe=list(data.get("unsafe", [])), info=dict(data.get("info", {})),
                           probe=FingerprintSpec(**data["probe"]) if data.get("probe") else None,
                           settings=dict(data.get("settings", {})),
                           companions=[FingerprintSpec(**c) for c in data.get("companions", [])])
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"{path}: malformed manifest ({exc!r})") from exc
        members = {manifest.default, *manifest.configs.values()}
        strays = sorted(set(manifest.settings) - members)
        if strays:
            raise ManifestError(f"{path}: settings for configuration file(s) the manifest does not use: "
                                f"{', '.join(strays)}")
        manifest.check(folder)
        return manifest

    def files(self) -> list[str]:
        names = [self.store, self.selector, self.default, *self.configs.values(), *self.settings.values()]
        for spec in (self.fingerprint, self.probe, *self.companions):
            if spec is not None and spec.weights:
                names.append(os.path.join("weights", spec.weights))
        return sorted(set(names))

    def check(self, folder: str) -> None:
        for name in self.files():
            if not os.path.isfile(os.path.join(folder, name)):
                raise ManifestError(f"{os.path.join(folder, name)}: missing part of the bundled portfolio")
