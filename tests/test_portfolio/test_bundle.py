"""The submission zip: only what the Model needs, a size limit, and an import from the extracted zip."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fingerprint.extractor import ExtractorInfo
from fingerprint.selectors import get_selector, save_selector
from fingerprint.store import META_FEATURES, DatasetEntry, Store
from learner.backbones import get_backbone
from learner.config import TrainConfig
from learner.weights import save_state_dict
from portfolio.bundle import BundleError, main as bundle_main, write_bundle

REPO = Path(__file__).resolve().parents[2]
MODEL = '''
import json, os
from metadata.spec import AutoDLMetadata  # a package of the bundle
HERE = os.path.dirname(os.path.abspath(__file__))
class Model:
    def __init__(self, metadata):
        with open(os.path.join(HERE, "bundle", "manifest.json")) as f:
            self.manifest = json.load(f)
        self.k = metadata.get_output_size()
'''


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    (root / "model.py").write_text(MODEL)
    for package in ("metadata", "learner", "fingerprint", "portfolio", "tests"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def portfolio(tmp_path: Path) -> Path:
    folder = tmp_path / "portfolio"
    (folder / "configs").mkdir(parents=True)
    (folder / "weights").mkdir()
    body = get_backbone("mobilenet_v3_small", num_classes=2, random_init=True).body
    save_state_dict(body.state_dict(), str(folder / "weights" / "mobilenet_v3_small-pool.pt"), fp16=True)
    save_state_dict(body.state_dict(), str(folder / "weights" / "mobilenet_v3_small-unused.pt"), fp16=True)
    TrainConfig(backbone="mobilenet_v3_small", weights="pool", name="d1").save(str(folder / "configs" / "d1.json"))
    TrainConfig(backbone="resnet18", weights=None, name="d2").save(str(folder / "configs" / "d2.json"))
    info = ExtractorInfo("mobilenet_v3_small", "abc", 32, 4)
    rng = np.random.default_rng(0)
    store = Store(info, [DatasetEntry(n, rng.normal(size=(10, 4)), {k: 1.0 for k in META_FEATURES}) for n in ("d1", "d2")])
    store.save(str(folder / "store.npz"))
    save_selector(get_selector("kmeans_vote", n_clusters=2).fit(store), str(folder / "selector.npz"))
    manifest = {"version": 1, "store": "store.npz", "selector": "selector.npz", "default": "configs/d2.json",
                "configs": {"d1": "configs/d1.json", "d2": "configs/d2.json"},
                "fingerprint": {"backbone": "mobilenet_v3_small", "weights": "mobilenet_v3_small-pool.pt",
                                "resolution": 32}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bundle_contents_and_smoke_test(code_root: Path, portfolio: Path, tmp_path: Path, samples_dir: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "submission.zip"
    args = ["--portfolio", str(portfolio), "--out", str(out), "--code-root", str(code_root),
            "--smoke-dataset", str(samples_dir / "miniciao")]
    assert bundle_main(args) == 0
    assert "Model imported and constructed" in capsys.readouterr().out
    names = zipfile.ZipFile(out).namelist()
    assert "model.py" in names and "metadata/spec.py" in names and "metadata/errors.py" in names
    assert "learner/trainer.py" not in names and "metadata/writer.py" not in names  # only what model.py imports
    assert "bundle/weights/mobilenet_v3_small-pool.pt" in names and "bundle/configs/d2.json" in names
    assert not any(n.startswith("tests/") or "__pycache__" in n or "unused" in n for n in names)
    assert bundle_main(args) == 2  # never overwrites an existing zip
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_relative_smoke_dataset_path(code_root: Path, portfolio: Path, tmp_path: Path, samples_dir: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(samples_dir.parent)
    out = tmp_path / "rel.zip"
    assert bundle_main(["--portfolio", str(portfolio), "--out", str(out), "--code-root", str(code_root),
                        "--smoke-dataset", f"{samples_dir.name}/miniciao"]) == 0


def test_size_limit_refusal(code_root: Path, portfolio: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.zip"
    with pytest.raises(BundleError, match=r"over the 1 MB limit; largest parts:\n.*mobilenet_v3_small-pool\.pt"):
        write_bundle(str(portfolio), str(out), limit_mb=1, code_root=str(code_root), progress=False)
    assert not out.exists() and not Path(str(out) + ".tmp").exists()


def test_incomplete_portfolio(code_root: Path, portfolio: Path, tmp_path: Path) -> None:
    (portfolio / "weights" / "mobilenet_v3_small-pool.pt").unlink()
    with pytest.raises(BundleError, match=r"mobilenet_v3_small-pool\.pt: missing part of the bundled portfolio"):
        write_bundle(str(portfolio), str(tmp_path / "x.zip"), code_root=str(code_root), progress=False)
    (portfolio / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest not found"):
        write_bundle(str(portfolio), str(tmp_path / "x.zip"), code_root=str(code_root), progress=False)


def test_failing_import_fails_the_smoke_test(code_root: Path, portfolio: Path, tmp_path: Path) -> None:
    (code_root / "model.py").write_text("import not_a_module\n")
    out = tmp_path / "s.zip"
    assert bundle_main(["--portfolio", str(portfolio), "--out", str(out), "--code-root", str(code_root)]) == 2


def test_imports_outside_the_platform_are_refused_statically(code_root: Path, portfolio: Path, tmp_path: Path) -> None:
    (code_root / "metadata" / "extra.py").write_text("def f():\n    import tqdm  # lazy: still packed, still refused\n")
    (code_root / "model.py").write_text(MODEL + "from metadata import extra\n")
    with pytest.raises(BundleError, match=r"metadata/extra\.py:2: imports 'tqdm'"):
        write_bundle(str(portfolio), str(tmp_path / "t.zip"), code_root=str(code_root), progress=False)
    assert not (tmp_path / "t.zip").exists()


def test_dynamic_imports_outside_the_platform_fail_the_smoke_test(code_root: Path, portfolio: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    (code_root / "model.py").write_text(MODEL + "import importlib\ntry:\n    importlib.import_module('yaml')\n"
                                        "except ImportError:\n    pass  # swallowed: the report still fails the run\n")
    args = ["--portfolio", str(portfolio), "--out", str(tmp_path / "d.zip"), "--code-root", str(code_root)]
    assert bundle_main(args) == 2
    err = capsys.readouterr().err
    assert "refused imports" in err and "'yaml'" in err and "model.py:" in err


def test_probe_network_weights_are_packed_and_required(code_root: Path, portfolio: Path, tmp_path: Path) -> None:
    body = get_backbone("resnet18", num_classes=2, random_init=True).body
    save_state_dict(body.state_dict(), str(portfolio / "weights" / "resnet18-probe.pt"), fp16=True)
    manifest = json.loads((portfolio / "manifest.json").read_text())
    manifest["probe"] = {"backbone": "resnet18", "weights": "resnet18-probe.pt", "resolution": 32}
    (portfolio / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "p.zip"
    write_bundle(str(portfolio), str(out), code_root=str(code_root), progress=False)
    assert "bundle/weights/resnet18-probe.pt" in zipfile.ZipFile(out).namelist()
    (portfolio / "weights" / "resnet18-probe.pt").unlink()
    with pytest.raises(BundleError, match=r"resnet18-probe\.pt: missing part of the bundled portfolio"):
        write_bundle(str(portfolio), str(tmp_path / "q.zip"), code_root=str(code_root), progress=False)
