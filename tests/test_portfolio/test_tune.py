"""BOHB on a cheap objective with two worker processes; Pyro settings; crash records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.config import TrainConfig
from portfolio.tune import main as tune_main

REPO = Path(__file__).resolve().parents[2]
OBJECTIVE = "tests.test_portfolio.objectives:quadratic"


@pytest.mark.slow  # process start-ups: 7 s (`make test-all`)
def test_pyro_uses_pickle_in_every_process() -> None:
    code = ("import os, portfolio.tune, Pyro4; "
            "print(os.environ['PYRO_SERIALIZER'], os.environ['PYRO_SERIALIZERS_ACCEPTED'], Pyro4.config.SERIALIZER)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRO_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pickle", "pickle", "pickle"]


def _args(samples_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", str(samples_dir / "miniciao"), "--out", str(out), "--allow-random", "--backbones",
            "mobilenet_v3_small", "--objective", OBJECTIVE, "--min-budget", "1", "--max-budget", "9", *extra]


@pytest.mark.slow  # two worker processes and a name server: 11 s (`make test-all`)
def test_bohb_with_two_worker_processes(samples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert tune_main(_args(samples_dir, out, "--iterations", "8", "--workers", "2")) == 0
    printed = capsys.readouterr().out
    summary = [line for line in printed.splitlines() if "model-based picks" in line][0]
    runs, crashed, picks = (int(w) for w in summary.split() if w.isdigit())
    assert runs > 40 and picks > 0
    crashes = [json.loads(line) for line in (out / "crashes.jsonl").read_text().splitlines()]
    assert len(crashes) == crashed > 0
    assert all("diverged at dropout" in c["error"] and c["config"]["dropout"] > 0.9 for c in crashes)
    results = [json.loads(line) for line in (out / "results.json").read_text().splitlines()]
    failed = [r for r in results if r[3] is None]  # hpbandster's record of a failed trial: no result, not a score
    assert len(failed) == crashed
    incumbent = TrainConfig.load(str(out / "miniciao.json"))
    assert incumbent.backbone == "mobilenet_v3_small" and incumbent.weights is None and incumbent.dropout <= 0.9
    assert len({p for p in (out.glob("worker-*.log"))}) == 2
    # A finished run is never overwritten; it can warm-start a new one.
    assert tune_main(_args(samples_dir, out, "--iterations", "1", "--workers", "0")) == 2
    again = tmp_path / "warm"
    assert tune_main(_args(samples_dir, again, "--iterations", "1", "--workers", "0", "--previous-run", str(out))) == 0
    assert (again / "miniciao.json").exists()


def test_bad_objective_name(samples_dir: Path, tmp_path: Path) -> None:
    from portfolio.objective import load_objective

    with pytest.raises(ValueError, match="module:function"):
        load_objective("quadratic")
    with pytest.raises(ValueError, match="cannot import objective"):
        load_objective("tests.test_portfolio.objectives:nothing")


def test_selector_hyperparameters_tune_with_the_same_runner(tmp_path: Path) -> None:
    import numpy as np

    from fingerprint.extractor import ExtractorInfo
    from fingerprint.selectors import get_selector
    from fingerprint.store import META_FEATURES, DatasetEntry, Store
    from portfolio.space import selector_space, to_selector_params

    rng = np.random.default_rng(0)
    store = Store(ExtractorInfo("resnet18", "x", 32, 8),
                  [DatasetEntry(f"d{i}", rng.normal(i, 1.0, (60, 8)), {k: 1.0 for k in META_FEATURES}) for i in range(3)])
    store.save(str(tmp_path / "store.npz"))
    out = tmp_path / "sel"
    assert tune_main(["--space", "selector:kmeans_vote", "--store", str(tmp_path / "store.npz"), "--out", str(out),
                      "--min-budget", "1", "--max-budget", "3", "--iterations", "2", "--workers", "0"]) == 0
    best = json.loads((out / "selector-kmeans_vote.json").read_text())
    assert best["selector"] == "kmeans_vote" and 5 <= best["params"]["n_clusters"] <= 40
    get_selector("kmeans_vote", **best["params"])  # the incumbent is a valid parameter set
    for sample in selector_space("mlp_moments", seed=1).sample_configuration(20):
        params = to_selector_params(sample)
        assert params["statistics"][-1] == "quantiles" and 0.0 <= params["p"] <= 0.4
        get_selector("mlp_moments", **params)


def test_a_pipeline_incumbent_writes_its_run_time_settings(samples_dir: Path, tmp_path: Path) -> None:
    from runtime.settings import RuntimeSettings

    out = tmp_path / "pipeline"
    assert tune_main(_args(samples_dir, out, "--iterations", "1", "--workers", "0", "--pipeline")) == 0
    space = json.loads((out / "configspace.json").read_text())
    assert any(h["name"] == "rt:probe_top" for h in space["hyperparameters"])
    # what the incumbent changed from the defaults (9 sampled member knobs: all at their default is unlikely), valid
    written = json.loads((out / "miniciao.settings.json").read_text())
    assert written and RuntimeSettings(**written) != RuntimeSettings()
    assert TrainConfig.load(str(out / "miniciao.json")).backbone == "mobilenet_v3_small"
