"""Stage functions called directly (no DVC): the train stage with a `last.pt` that DVC kept (persist)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesr.config import Params, load_params
from edgesr.stages import prepare, train
from edgesr.train.trainer import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODEL = "espcn"


def _with_train(params: Params, **changes) -> Params:
    return params.model_copy(update={"train": params.train.model_copy(update=changes)})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params]:
    root = tmp_path_factory.mktemp("stages")
    params = load_params(ROOT / "params.yaml", "smoke")
    # the embedded photos only: this test is about training state, not benchmarks
    params = params.model_copy(update={"prepare": params.prepare.model_copy(update={"benchmarks": {}})})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        prepare.run(params, root)
    return root, params


def test_train_stage_resumes_same_settings_and_restarts_changed_ones(project, monkeypatch, capsys):
    root, params = project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    last = root / params.paths.models / MODEL / "last.pt"

    first = train.run(params, MODEL, root)
    assert first.final_iteration == params.train.iterations
    assert (root / params.paths.metrics / "train" / f"{MODEL}.json").is_file()
    assert (root / params.paths.plots / "train" / f"{MODEL}.csv").read_text().startswith("iteration,loss,val_psnr")
    assert (root / params.paths.models / MODEL / "sample_crops.png").stat().st_size > 0

    # A rerun from nothing reproduces the run: same initial weights, same batches.
    kept = last.parent.with_name("kept")
    last.parent.rename(kept)
    train.run(params, MODEL, root)
    for name, weight in load_checkpoint(kept / "last.pt")["model"].items():
        assert weight.equal(load_checkpoint(last)["model"][name])

    # A changed setting (here the length, which reshapes the schedule): DVC keeps the folder
    # (persist), the trainer would refuse the stale last.pt, so the stage starts over and says so.
    longer = _with_train(params, iterations=params.train.iterations + 6)
    capsys.readouterr()
    restarted = train.run(longer, MODEL, root)
    assert f"starting {MODEL} from scratch" in capsys.readouterr().out
    assert restarted.history[0]["iteration"] <= params.train.log_every
    assert load_checkpoint(last)["config"]["iterations"] == longer.train.iterations

    # Nothing changed: the finished run is returned as it is, with no new training.
    before = load_checkpoint(last)["model"]
    again = train.run(longer, MODEL, root)
    assert "from scratch" not in capsys.readouterr().out
    assert again.final_iteration == longer.train.iterations
    for name, weight in load_checkpoint(last)["model"].items():
        assert weight.equal(before[name])
