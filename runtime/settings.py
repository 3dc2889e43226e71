"""Knobs of the run-time flow, as one typed record (a JSON file may set any of them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["RuntimeSettings", "load_settings"]


@dataclass(frozen=True)
class RuntimeSettings:
    """Knobs of the run-time flow (environment AUTODL_SETTINGS=file.json or bundle/settings.json).

    Attributes:
        config: force one configuration (its name in the bundle, or "default"): selection off.
        fingerprint_batch: samples fingerprinted for selection (the test batch size of the paper).
        probe_samples: training samples decoded for the probe per chunk (up to 4 chunks).
        val_fraction: share of the probe sample held out to compare probe and network.
        first_slice, growth: the first fine-tuning slice (s) and its growth factor per round.
        safety: seconds kept in reserve on top of the measured test time.
        patience: rounds without validation gain before `done_training`.
        cache_bytes: memory cap of the decoded training set (the rest is streamed).
        decode_share: share of the time left that decoding the training set may take before
            fine-tuning starts (estimated from the probe sample's decode rate; the rest is streamed).
        refit_share, refit_samples: time share and sample cap of refitting the probe on more of the
            training set before fine-tuning starts (skipped unless it can use twice the first sample).
        max_divergences: consecutive non-finite losses (each restoring the last good weights and halving
            the learning rate) after which a configuration counts as failed.
        seed: randomness of sampling and training.
    """

    config: str | None = None
    fingerprint_batch: int = 64
    probe_samples: int = 512
    val_fraction: float = 0.15
    first_slice: float = 5.0
    growth: float = 1.6
    safety: float = 5.0
    patience: int = 4
    cache_bytes: int = 4 * 1024**3
    decode_share: float = 0.25
    refit_share: float = 0.1
    refit_samples: int = 5000
    max_divergences: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("fingerprint_batch", "probe_samples", "first_slice", "growth", "cache_bytes", "refit_samples",
                    "max_divergences", "patience")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"The {name!r} setting must be a positive number. Got {value!r} instead.")
        for name in ("val_fraction", "decode_share", "refit_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"The {name!r} setting must be in (0, 1). Got {value!r} instead.")
        if not isinstance(self.safety, (int, float)) or self.safety < 0:
            raise ValueError(f"The 'safety' setting must be >= 0. Got {self.safety!r} instead.")


def load_settings(bundle_dir: str) -> RuntimeSettings:
    """Settings from AUTODL_SETTINGS (a JSON file), else bundle/settings.json; AUTODL_CONFIG forces a config."""
    path = os.environ.get("AUTODL_SETTINGS") or os.path.join(bundle_dir, "settings.json")
    values: dict[str, Any] = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable settings ({exc})") from exc
        if not isinstance(values, dict):
            raise ValueError(f"{path}: settings must be a JSON object")
        unknown = set(values) - {f.name for f in fields(RuntimeSettings)}
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        try:
            settings = RuntimeSettings(**values)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    else:
        settings = RuntimeSettings()
    if os.environ.get("AUTODL_CONFIG"):
        settings = replace(settings, config=os.environ["AUTODL_CONFIG"])
    return settings
