"""Knobs of the run-time flow, as one typed record (a JSON file may set any of them)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["RuntimeSettings", "MEMBER_FIELDS", "load_settings", "member_key", "member_settings", "read_settings_file"]


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
        pixel_first: answer first with a logistic regression on downsampled pixels (under a second), then
            with the frozen-feature probe; off: the probe answers first.
        pixel_size: side of the downsampled images of the pixel model.
        first_answer_seconds: with `pixel_first`, the first call decodes the first sample (`probe_samples`) for at
            most this long (at least one decode batch); when the rest would take as long again (at the rate seen), a
            pixel model of the samples decoded answers first, unvalidated, and the next call decodes the rest of the
            sample where the read stopped (nothing twice), fits the pixel model and the first probe on all of it,
            and their validated answer replaces the first whatever it scores. Large images decode at 150-400 a second here (weather's first 512 at 224 px took 1.2-3.5 s,
            its first answer came at 2.9-4.3 s): the first answer need not wait for all of them. 0: the whole first
            sample first (the flow before).
        probe_inline: when the probe's features of the first sample are estimated to take at most this many
            seconds, the probe is fitted in the first call too and competes for the first answer.
        probe_resolutions: the probe's input sides, ascending (empty: the bundle's probe resolution).
            The first probe uses the best (side, flip) whose features of the sample and the test set are
            estimated to take at most `probe_first_seconds` (else the cheapest); a better one follows when
            it costs at most `probe_share` of the time left. Frozen ImageNet features gain with the side
            even on small images (upsampled), so the rungs trade time for accuracy.
        probe_flip: also consider features averaged over the input and its horizontal flip (twice the cost; one
            pass more where the same side's plain features exist already).
        probe_climb: "step" (default): each later rung before fine-tuning is the next larger side (then, at the
            largest, its flipped rung), so that a cheaper better answer comes sooner on the log time axis, at the
            price of reaching the top later; "best": the best rung affordable (from 64 px straight to 224 px when
            that fits; the behaviour before). Held-out, T = 300 s, one run each: antsbees 0.8803 -> 0.9054 (the
            128 px answer at 4.3 s), bloodcells 0.7150 -> 0.7388 (at 8.9 s); the 224 px answer 1-2 s later.
        probe_first_seconds, probe_share: the cost caps of the first and of a later probe (see above).
        probe_late_share: when fine-tuning stalls, a better probe rung is fitted first if it costs at most
            this share of the time left (0: never); it must then beat the answer like the network does.
        probe_companions: "top" (default): once the climb has reached the largest side (and after a stall, like a
            late rung), fit a probe on the probe's rung's features concatenated with each companion network's at
            that rung (the bundle's `companions`; none: nothing changes), when it costs at most the same share of
            the time left; "any": at whatever rung the climb ended; "off": the flow before companions existed.
            Held-out, T = 300 s, one run each: with "any", where the climb stopped at 128 px (larger data) the
            companion delayed fine-tuning by 5 s and lost (bloodcells 0.7672 against 0.7833 +- 0.017, hoda
            0.9659 against 0.9702 +- 0.004); with "top" its probe answered on four small sets: covid_xray
            +0.004, antsbees -0.003, miniciao -0.004, Monkeys +0.30 (4 test images: chance). The pool's figures
            (six sets, 512 samples: 0.935 against 0.906) are why it is on; README, "Benchmarks".
        probe_features: what the probe (and its companions) read of a frozen network: "stages" (default), the
            average-pooled outputs of its last stages concatenated (`BackboneSpec.stages`; EfficientNet-Lite0:
            blocks 3-6, 704 values), or "head", the penultimate features (1280; the flow before). The head is
            specific to ImageNet's classes; mid-level features transfer further, in the same forward pass. Chosen on
            the pool's eight sources (`benchmarks/probe_backbones.py`, 512 training samples, test NAUC at 64 / 128
            px): 0.861 / 0.911 with the head against 0.912 / 0.938, better on all 16; checked on the ten held-out
            sets, unused for the choice: 0.806 / 0.852 against 0.887 / 0.920 (bloodcells 0.65 -> 0.78 at 128 px;
            lower only on miniciao at 64 px, 0.742 -> 0.718). At 224 px with flips a tie (0.929 / 0.931; miniciao
            0.888 -> 0.820). Whole runs (T = 300 s, five held-out pairs): mean ALC +0.004, up where the climb stops
            below 224 px (bloodcells +0.016, its clips +0.052), down on miniciao (-0.036; README, "Benchmarks").
        linear_tol: the stopping tolerance of the linear models' solver (L-BFGS). 1e-2 fits 5-7x faster than
            1e-4 (the earlier value) with out-of-fold NAUC within 0.01 (measured on CIFAR-10 and DTD samples,
            pixels and probe features): the first answers and the folds come sooner.
        probe_C, pixel_C: the inverse regularisation strength of the probe's and of the pixel model's logistic
            regressions (on standardised inputs). Measured on the pool's eight source datasets (test NAUC;
            `benchmarks/probe_regularisation.py`): the probe (100 and 450 samples at 64 and 128 px) 0.803 mean
            with C = 0.01 against 0.792 with 0.5 (the earlier value), on 1000-2000 samples at 64 px 0.864
            against 0.848; the pixel model (100 and 450 samples) 0.569 with 0.01 against 0.552 with 0.1 (the
            earlier value). A C chosen per dataset by out-of-fold NAUC (five times the fits) did no better.
        pixel_max_iter: the pixel model's solver cap (its fit is on the first answer's critical path): a bound on
            fits that run away, not a regulariser. `benchmarks/linear_iterations.py`, session 22: on the pool's eight
            sources (434 training samples) the pixel model converged in 6-29 iterations (0.01-0.38 s); 10 fitted in
            0.01-0.14 s with test NAUC +0.0026 mean there, but on synthetic data it stopped far from the optimum
            (100 classes of 1-2 samples: 0.584 against 0.683, where the pixel model stayed the answer for the whole
            run; 50,000 images of 32 px, 79 iterations: 0.869 against 0.960). 50 changed no measured NAUC by more
            than 0.001 and cut that 79-iteration fit from 0.75 to 0.48 s. 300: the flow before (the probes keep
            300: they converge in 4-15).
        cv_folds: when the first sample holds the whole training set (small data), the linear models are
            scored by out-of-fold predictions of this many stratified folds over all of it and answer
            fitted on all of it; the network still trains without its held-out part, and is compared on
            that part alone. 0: a held-out part for every predictor.
        oof_prior_shift: move each fold's out-of-fold predictions from its fit's class frequencies to the
            whole sample's before they are pooled and scored. Without it a held-out sample's class is rarer in
            its own fit than in the others', and where classes have few samples the pooled scores rank its
            positives low: out-of-fold NAUC of the pixel model / the 64 px probe on Monkeys (2-3 images per
            class) 0.08 / 0.22 against 0.41 / 0.48 shifted (test 1.00 / 0.61), on 100 classes of 150 samples
            -0.08 / -0.36 against 0.45 / 0.15 (test 0.63 / 0.26); within 0.02 on yalefaces, antsbees and
            miniciao. Off: the flow before.
        select_late: fingerprint and select after the first answers (when the training set is decoded),
            so selection costs the first prediction nothing; off: before the first answer.
        val_samples, val_share: once the training set is decoded, the validation set grows to this many
            samples, at most this share of the decoded set (0: the probe sample's validation part only).
        switch_confidence: bootstrap probability with which a challenger (the network, a blend) must beat
            the current answer on validation before it replaces it; the probe and refit models replace
            the answer unless they are that surely worse. 0: switch on any validation gain.
        bootstrap: resamples of the validation set behind that probability.
        min_val_choice: with fewer validation samples nothing is blended (blend weights chosen on so few
            samples overfit them) and the probe and the refits replace the answer without a check.
        min_val_switch: a challenger (the network, a blend) may replace the answer only when compared on at least
            this many validation rows where both are honest: a bootstrap over fewer rows is overconfident. On
            miniciao (82 training images, 10 classes) the network was compared on the 12 rows held out from it,
            won there with confidence 0.8 (0.891 against 0.826) and replaced the probe: test NAUC 0.896 -> 0.626;
            on 100 classes of 1-2 images (22 rows) the network's switch had cost 0.63 -> 0.43. The clips of
            bloodcells (4 classes, 36 rows) keep their network's switch (test 0.66 -> 0.69, ending at 0.83).
            The linear models still replace the answer unless surely worse, so below the floor they replace it.
            0: no floor (the flow before).
        blend: also try blends of the current answer with each new predictor (weights 0.25, 0.5, 0.75).
        next_config_on_stall: when fine-tuning stops improving and time is left, fine-tune the next
            ranked configuration instead of stopping.
        forward_activations: float elements of a network's largest layer output in one inference pass on a CPU at
            most (frozen networks' features and the fine-tuned network's predictions; `learner.data.forward_batch`):
            passes that outgrow the caches run slower (EfficientNet-Lite0 at 224 px: about 4 times faster in passes
            of 4 images than of 64; `benchmarks/forward_batch.py`). 0: fixed passes of 64 samples (features) and
            128 (predictions) whatever their side, the flow before.
        store_native: decode and keep the inputs at the images' own largest side when that is smaller than what
            the readers need (known from the metadata, else the largest of the first 64 samples but at least the
            probe's first side; resized up when read): hoda's digits (at most 58 px, sizes vary) were decoded at
            224 px, 0.3 s for 512 training and 0.35 s for 600 test images against 0.12 and 0.13 s at 32 px, all
            before the first answer. Off: the largest side any reader needs (the flow before).
        video_frames: clips are decoded and kept with at most this many evenly spaced frames (more when a reader,
            the probe's or a configuration's network, samples more frames per clip); every reader samples its frames
            from those. Long clips made the first sample and the test set slow and large: 181-frame clips of
            120x160 px (a synthetic case, `benchmarks/edge_cases.py` kraut) took 63 s for the first 500 and 28 s
            for 250 test clips, and 10 GB, when every frame was resized and kept. 0: every frame (the flow before).
        first_sample_seconds: decoding the first sample stops after this many seconds (at least one batch), and
            its fourfold reread (fewer than half the classes seen) after four times as many; 0: no time cap.
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
    pixel_first: bool = True
    pixel_size: int = 16
    first_answer_seconds: float = 0.5
    probe_inline: float = 0.0
    probe_resolutions: tuple[int, ...] = (64, 128, 224)
    probe_flip: bool = True
    probe_climb: str = "step"
    probe_first_seconds: float = 1.0
    probe_share: float = 0.04
    probe_late_share: float = 0.25
    probe_companions: str = "top"
    probe_features: str = "stages"
    cv_folds: int = 5
    oof_prior_shift: bool = True
    linear_tol: float = 1e-2
    probe_C: float = 0.01
    pixel_C: float = 0.01
    pixel_max_iter: int = 50
    select_late: bool = True
    val_samples: int = 600
    val_share: float = 0.2
    switch_confidence: float = 0.8
    bootstrap: int = 40
    min_val_choice: int = 50
    min_val_switch: int = 30
    blend: bool = True
    next_config_on_stall: bool = True
    store_native: bool = True
    video_frames: int = 16
    first_sample_seconds: float = 3.0
    forward_activations: int = 5_000_000  # learner.data.DEFAULT_FORWARD_ACTIVATIONS (not imported: that loads torch)
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("fingerprint_batch", "probe_samples", "first_slice", "growth", "cache_bytes", "refit_samples",
                    "max_divergences", "patience", "pixel_size", "bootstrap", "probe_C", "pixel_C")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"The {name!r} setting must be a positive number. Got {value!r} instead.")
        for name in ("val_fraction", "decode_share", "refit_share", "val_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"The {name!r} setting must be in (0, 1). Got {value!r} instead.")
        for name in ("probe_inline", "safety", "probe_first_seconds", "first_sample_seconds", "first_answer_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"The {name!r} setting must be >= 0. Got {value!r} instead.")
        for name in ("min_val_choice", "min_val_switch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"The {name!r} setting must be an int >= 0. Got {value!r} instead.")
        if (isinstance(self.forward_activations, bool) or not isinstance(self.forward_activations, int)
                or self.forward_activations < 0):
            raise ValueError("The 'forward_activations' setting must be an int >= 0. "
                             f"Got {self.forward_activations!r} instead.")
        if isinstance(self.video_frames, bool) or not isinstance(self.video_frames, int) or self.video_frames < 0:
            raise ValueError(f"The 'video_frames' setting must be an int >= 0. Got {self.video_frames!r} instead.")
        if not isinstance(self.val_samples, int) or self.val_samples < 0:
            raise ValueError(f"The 'val_samples' setting must be an int >= 0. Got {self.val_samples!r} instead.")
        if not isinstance(self.switch_confidence, (int, float)) or not 0 <= self.switch_confidence < 1:
            raise ValueError(f"The 'switch_confidence' setting must be in [0, 1). Got {self.switch_confidence!r} "
                             "instead.")
        if not isinstance(self.probe_resolutions, (tuple, list)) or any(
                not isinstance(r, int) or r < 16 for r in self.probe_resolutions) or list(
                self.probe_resolutions) != sorted(set(self.probe_resolutions)):
            raise ValueError("The 'probe_resolutions' setting must be ascending distinct ints >= 16. "
                             f"Got {self.probe_resolutions!r} instead.")
        object.__setattr__(self, "probe_resolutions", tuple(self.probe_resolutions))  # JSON gives a list
        for name in ("probe_share", "probe_late_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"The {name!r} setting must be in [0, 1). Got {value!r} instead.")
        if self.probe_companions not in ("off", "top", "any"):
            raise ValueError("The 'probe_companions' setting must be 'off', 'top' or 'any'. "
                             f"Got {self.probe_companions!r} instead.")
        if self.probe_features not in ("head", "stages"):
            raise ValueError("The 'probe_features' setting must be 'head' or 'stages'. "
                             f"Got {self.probe_features!r} instead.")
        if self.probe_climb not in ("best", "step"):
            raise ValueError(f"The 'probe_climb' setting must be 'best' or 'step'. Got {self.probe_climb!r} instead.")
        if not isinstance(self.linear_tol, (int, float)) or not 0 < self.linear_tol < 1:
            raise ValueError(f"The 'linear_tol' setting must be in (0, 1). Got {self.linear_tol!r} instead.")
        if isinstance(self.pixel_max_iter, bool) or not isinstance(self.pixel_max_iter, int) or self.pixel_max_iter < 1:
            raise ValueError(f"The 'pixel_max_iter' setting must be an int >= 1. Got {self.pixel_max_iter!r} instead.")
        if not isinstance(self.cv_folds, int) or self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"The 'cv_folds' setting must be 0 or an int >= 2. Got {self.cv_folds!r} instead.")
        for name in ("pixel_first", "select_late", "blend", "next_config_on_stall", "probe_flip", "store_native",
                     "oof_prior_shift"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"The {name!r} setting must be true or false. Got {getattr(self, name)!r} instead.")


# What a portfolio member's own settings may set: the knobs read once its configuration is chosen (after
# the first answers), i.e. the fine-tuning schedule, the decisions and the later probe rungs. The knobs
# of the first answers act before any member is chosen and stay global.
MEMBER_FIELDS = frozenset({
    "first_slice", "growth", "patience", "safety", "max_divergences", "decode_share", "refit_share", "refit_samples",
    "val_samples", "val_share", "switch_confidence", "bootstrap", "min_val_choice", "min_val_switch", "blend",
    "next_config_on_stall",
    "probe_resolutions", "probe_flip", "probe_share", "probe_late_share", "probe_companions"})


def read_settings_file(path: str) -> dict[str, Any]:
    """A settings file's JSON object; any fault is a ValueError naming the file."""
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable settings ({exc})") from exc
    if not isinstance(values, dict):
        raise ValueError(f"{path}: settings must be a JSON object")
    return values


def _with(base: RuntimeSettings, values: dict[str, Any], where: str) -> RuntimeSettings:
    """`base` with `values`; unknown names and bad values are errors naming `where`."""
    unknown = sorted(set(values) - {f.name for f in fields(RuntimeSettings)})
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    try:
        return replace(base, **values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def member_key(config: Any, overrides: dict[str, Any] | None = None) -> str:
    """What a portfolio member runs: its configuration (a `TrainConfig`) without the name, and its own
    settings. Two members with one key are one member, however their files are named."""
    return json.dumps([asdict(replace(config, name="")), overrides or {}], sort_keys=True, default=str)


def member_settings(base: RuntimeSettings, overrides: dict[str, Any], where: str) -> RuntimeSettings:
    """`base` with a portfolio member's own settings; `where` (its file) names the fault in any error."""
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: settings must be a JSON object")
    early = sorted(set(overrides) & {f.name for f in fields(RuntimeSettings)} - MEMBER_FIELDS)
    if early:
        raise ValueError(f"{where}: {', '.join(early)} act(s) before a configuration is chosen and cannot be set "
                         "per configuration (set them in the bundle's settings.json)")
    return _with(base, overrides, where)


def load_settings(bundle_dir: str) -> RuntimeSettings:
    """Settings from AUTODL_SETTINGS (a JSON file), else bundle/settings.json; AUTODL_CONFIG forces a config."""
    path = os.environ.get("AUTODL_SETTINGS") or os.path.join(bundle_dir, "settings.json")
    settings = _with(RuntimeSettings(), read_settings_file(path), path) if os.path.exists(path) else RuntimeSettings()
    if os.environ.get("AUTODL_CONFIG"):
        settings = replace(settings, config=os.environ["AUTODL_CONFIG"])
    return settings
