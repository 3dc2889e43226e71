"""Pack the submission: `model.py` at the zip root, the packages it imports, and the portfolio.

    python -m portfolio.bundle --portfolio DIR --out submission.zip [--limit-mb 300] [--overwrite]
                               [--smoke-dataset AUTODL_DIR]

DIR is a bundled-portfolio folder (`manifest.json`, `configs/*.json`, the fingerprint store and
selector, `weights/`). The code packed is computed, not listed: the project modules that
`model.py` imports, followed through every import statement (those inside functions too); every
other module they import must be the standard library's or one of the platform's packages
(`PLATFORM_PACKAGES`), or the bundle is refused naming the file, line and module. Only the weights
that the configurations and the fingerprint and probe networks use are packed. Over the limit the
zip is refused with a size breakdown. After writing, the zip is extracted to an empty folder and
`from model import Model` runs there in a fresh process that refuses any import outside the
platform's packages (with --smoke-dataset, the Model is also constructed on that dataset's metadata).
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from scoring.platform_ingestion import PLATFORM_PACKAGES

__all__ = ["PLATFORM_PACKAGES", "BUNDLE_DIR", "BundleError", "runtime_modules", "bundle_files", "write_bundle",
           "smoke_test", "main"]

REPO = Path(__file__).resolve().parents[1]
BUNDLE_DIR = "bundle"  # the portfolio's folder name inside the submission (model.py looks there)


class BundleError(ValueError):
    """The portfolio is incomplete, the code imports what the platform lacks, or the bundle is too large."""


def _module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def runtime_modules(code_root: str = str(REPO), entry: str = "model.py") -> dict[str, Path]:
    """{module name: file} of every project module `entry` imports, transitively.

    Every import statement counts, also those inside functions: what is imported lazily at run
    time must be in the zip just the same. A package's `__init__` comes with any of its modules.

    Raises:
        BundleError: a module imports something outside the project, the standard library and
            `PLATFORM_PACKAGES` (names the file, line and module).
    """
    root = Path(code_root)
    allowed = set(sys.stdlib_module_names) | set(PLATFORM_PACKAGES) | {"__future__"}
    found: dict[str, Path] = {}
    queue: list[tuple[str, Path]] = [("model", root / entry)]
    problems = []
    while queue:
        name, path = queue.pop()
        if name in found:
            continue
        found[name] = path
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        wanted: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                wanted.append((module, node.lineno))
                wanted += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
        for module, line in wanted:
            top = module.split(".")[0]
            if _module_file(root, top) is None:  # not ours: must exist on the platform
                if top not in allowed:
                    problems.append(f"{path.relative_to(root)}:{line}: imports {top!r}")
                continue
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # the package chain, then the module itself
                sub = ".".join(parts[:i])
                file = _module_file(root, sub)
                if file is not None and sub not in found:
                    queue.append((sub, file))
    if problems:
        raise BundleError("the run-time code imports modules the AutoDL platform does not have "
                          f"(only the standard library and {', '.join(PLATFORM_PACKAGES)}):\n  "
                          + "\n  ".join(sorted(set(problems))))
    return found


def bundle_files(portfolio: str, code_root: str = str(REPO)) -> dict[str, Path]:
    """{path inside the zip: file on disk} for everything the submission needs."""
    from learner.config import TrainConfig
    from learner.weights import weights_path
    from runtime.manifest import MANIFEST, Manifest, ManifestError

    root, folder = Path(code_root), Path(portfolio)
    try:
        manifest = Manifest.load(str(folder))
    except ManifestError as exc:
        raise BundleError(str(exc)) from exc
    if not (root / "model.py").is_file():
        raise BundleError(f"{root}: no model.py")
    files: dict[str, Path] = {str(path.relative_to(root)): path for path in runtime_modules(str(root)).values()}
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
    """Extract into an empty folder and import `Model` there as the platform would (construct it on
    `dataset`'s metadata if given): a fresh process, nothing of this project on the import path, and
    every import outside the platform's packages refused (`scoring/platform_ingestion.py`)."""
    with tempfile.TemporaryDirectory() as tmp:
        code_dir, out = os.path.join(tmp, "submission"), os.path.join(tmp, "out")
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(code_dir)
        command = [sys.executable, "-P", str(REPO / "scoring" / "platform_ingestion.py"), "--code_dir", code_dir,
                   "--output_dir", out, "--reader_root", str(REPO)]
        command += ["--dataset_dir", os.path.abspath(dataset), "--construct_only"] if dataset else ["--import_only"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(command, cwd=code_dir, env=env, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            raise BundleError(f"smoke test failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return "smoke test: Model imported" + (" and constructed" if dataset else "") + \
            " from the extracted zip, with the platform's packages only"


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
