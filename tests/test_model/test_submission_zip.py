"""What a user uploads is what runs: the zip of the repository's bundle, extracted into an empty folder,
through the platform-style ingestion (nothing of the repository importable, only the platform's packages)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from portfolio.bundle import write_bundle
from scoring.run import EXIT_OK, run_local

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upload")
    write_bundle(str(REPO / "bundle"), str(root / "submission.zip"), progress=False)
    with zipfile.ZipFile(root / "submission.zip") as z:
        names = z.namelist()
        z.extractall(root / "submission")
    assert "model.py" in names and "runtime/engine.py" in names and "scoring/metrics.py" in names
    assert not any(n.startswith(("portfolio/", "tests/", "benchmarks/")) for n in names)  # no offline code
    assert "scoring/run.py" not in names and "learner/weights.py" not in names and "metadata/writer.py" not in names
    return root / "submission"


# Monkeys (images of varying sizes) in the default run; miniciao with the slow checks (`make test-all`): the
# default run's duration on this machine varied from 13.9 to 16.2 min in one session with the same tests
@pytest.mark.parametrize("name", [pytest.param("miniciao", marks=pytest.mark.slow), "Monkeys"])
def test_extracted_zip_runs_the_ingestion_loop_with_platform_packages_only(name: str, samples_dir: Path,
                                                                            submission: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AUTODL_BUNDLE", "AUTODL_CONFIG", "AUTODL_SETTINGS"):
        monkeypatch.delenv(key, raising=False)
    result = run_local(str(samples_dir / name), str(submission), str(tmp_path / "run"), time_budget=20, t0=1,
                       poll=0.2, verbose=False, platform=True)
    log = Path(result.log).read_text()
    assert result.exit_code == EXIT_OK, log[-3000:]
    report = json.loads((tmp_path / "run" / "predictions" / "platform_report.json").read_text())
    assert report["refused_imports"] == [] and report["outside_modules"] == {} and report["error"] is None
    assert report["modules"]["runtime.engine"] == str(submission / "runtime" / "engine.py")
    assert "timm" not in log  # the Lite0 probe network is ours
    o = result.outcome
    assert len(o.scores) >= 2 and o.first_prediction_time < 10 and o.alc > 0
    assert "[select] most similar known dataset" in log and "[train] probe (" in log
