"""Pack the submission: `model.py` at the zip root, the packages it imports, and the portfolio.

    python -m portfolio.bundle --portfolio DIR --out submission.zip [--limit-mb 300] [--overwrite]
                               [--smoke-dataset AUTODL_DIR]

DIR is a bundled-portfolio folder (`manifest.json`, `configs/*.json`, the fingerprint store and
selector, `weights/`). Only the weights that the configurations and the fingerprint network use
are packed; tests, benchmarks, caches and virtual environments never are. Over the limit the zip
is refused with a size breakdown. After writing, the zip is extracted to a temporary folder and
`from model import Model` runs there in a fresh process (with --smoke-dataset, the Model is also
constructed on that dataset's metadata).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

__all__ = ["CODE_PACKAGES", "BUNDLE_DIR", "BundleError", "bundle_files", "write_bundle", "smoke_test", "main"]

REPO = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("metadata", "learner", "fingerprint", "portfolio")  # what model.py imports
BUNDLE_DIR = "bundle"  # the portfolio's folder name inside the submission (model.py looks there)


class BundleError(ValueError):
    """The portfolio is incomplete, or the bundle is over its size limit."""


def bundle_files(portfolio: str, code_root: str = str(REPO)) -> dict[str, Path]:
    """{path inside the zip: file on disk} for everything the submission needs."""
    from learner.config import TrainConfig
    from learner.weights import weights_path
    from portfolio.manifest import MANIFEST, Manifest, ManifestError

    root, folder = Path(code_root), Path(portfolio)
    try:
        manifest = Manifest.load(str(folder))
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc
    files: dict[str, Path] = {"model.py": root / "model.py"}
    if not files["model.py"].is_file():
        raise BundleError(f"{root}: no model.py")
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".proto", ".typed"):
                files[str(path.relative_to(root))] = path
    weights = set()
    for config_file in {manifest.default, *manifest.configs.values()}:
        try:
            config = TrainConfig.load(str(folder / config_file))
        except ValueError as exc:
            raise BundleError(str(exc)) from exc
        if config.weights is not None:
            weights.add(Path(weights_path(str(folder / "weights"), config.backbone, config.weights)))
    for name in [MANIFEST, *manifest.files()]:
        files[f"{BUNDLE_DIR}/{name}"] = folder / name
    for path in sorted(weights):
        if not path.is_file():
            raise BundleError(f"{path}: weights file missing (a configuration uses it)")
        files[f"{BUNDLE_DIR}/weights/{path.name}"] = path
    return files


def _breakdown(files: dict[str, Path]) -> str:
    groups: dict[str, int] = defaultdict(int)
    for arcname, path in files.items():
        key = arcname if arcname.startswith(f"{BUNDLE_DIR}/weights/") or arcname.endswith(".npz") else (
            "code" if arcname.endswith((".py", ".proto", ".typed")) else f"{BUNDLE_DIR}/configs and manifest")
        groups[key] += path.stat().st_size
    rows = sorted(groups.items(), key=lambda kv: -kv[1])
    return "\n".join(f"  {size / 1e6:9.1f} MB  {name}" for name, size in rows)


def write_bundle(portfolio: str, out: str, *, limit_mb: float = 300.0, code_root: str = str(REPO),
                 overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    from tqdm import tqdm

    if os.path.exists(out) and not overwrite:
        raise BundleError(f"{out}: exists; pass --overwrite to replace it")
    files = bundle_files(portfolio, code_root)
    limit = limit_mb * 1e6
    raw = sum(p.stat().st_size for p in files.values())
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for arcname, path in tqdm(files.items(), desc="bundle", unit="file", disable=not progress):
            z.write(path, arcname)
    size = os.path.getsize(tmp)
    if size > limit:
        os.remove(tmp)
        raise BundleError(f"the bundle would be {size / 1e6:.1f} MB (uncompressed {raw / 1e6:.1f} MB), over the "
                          f"{limit_mb:g} MB limit; largest parts:\n{_breakdown(files)}")
    os.replace(tmp, out)
    return files


def smoke_test(zip_path: str, dataset: str | None = None) -> str:
    """Extract and import `Model` in a fresh process (construct it on `dataset`'s metadata if given)."""
    dataset = os.path.abspath(dataset) if dataset else None  # the check runs inside the extraction folder
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(tmp)
        code = ["import sys", f"sys.path.insert(0, {tmp!r})", "from model import Model"]
        if dataset:
            code += ["from metadata.check import find_dataset", "from metadata.spec import AutoDLMetadata",
                     "import os", f"name, data = find_dataset({dataset!r})",
                     "m = Model(AutoDLMetadata(os.path.join(data, 'train')))"]
        code.append("print('smoke test: Model imported' + (' and constructed' if 'm' in dir() else ''))")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=tmp, env=env, capture_output=True,
                                text=True, timeout=1200)
        if result.returncode != 0:
            raise BundleError(f"smoke test failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return result.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.bundle", description=__doc__.splitlines()[0])
    p.add_argument("--portfolio", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--limit-mb", type=float, default=300.0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--smoke-dataset", help="construct the Model on this AutoDL dataset's train metadata")
    p.add_argument("--code-root", default=str(REPO), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        files = write_bundle(args.portfolio, args.out, limit_mb=args.limit_mb, code_root=args.code_root,
                             overwrite=args.overwrite)
        message = smoke_test(args.out, args.smoke_dataset)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(files)} files, {os.path.getsize(args.out) / 1e6:.1f} MB\n{_breakdown(files)}\n{message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
