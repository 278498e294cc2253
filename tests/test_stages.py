"""Stage functions called directly (no DVC): the train stage with a `last.pt` that DVC kept (persist)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from edgesr.config import Params, load_params
from edgesr.stages import prepare
from edgesr.stages import train as train_stage
from edgesr.train import run as training_run
from edgesr.train.restore import trained_model
from edgesr.train.trainer import load_checkpoint
from tests.ddp_worker import Interrupted, interrupt_at

ROOT = Path(__file__).resolve().parents[1]
MODEL = "espcn"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    for name, weight in first.items():
        assert weight.equal(second[name]), name


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


def test_train_stage_resumes_only_an_interrupted_run(project, monkeypatch, capsys):
    root, params = project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    out_dir = root / params.paths.models / MODEL
    last = out_dir / "last.pt"

    # Given one complete run, kept aside as the reference
    first = train_stage.run(params, MODEL, root)
    assert first.final_iteration == params.train.iterations
    assert (root / params.paths.metrics / "train" / f"{MODEL}.json").is_file()
    assert (root / params.paths.plots / "train" / f"{MODEL}.csv").read_text().startswith("iteration,loss,val_psnr")
    reference = out_dir.with_name("reference")
    out_dir.rename(reference)

    # An interrupted run (checkpoint every 6 iterations, stopped at 9) resumes from iteration 6
    # and ends with exactly the weights of the uninterrupted run.
    real_train = training_run.train
    monkeypatch.setattr(training_run, "train", partial(real_train, on_iteration=interrupt_at(9)))
    with pytest.raises(Interrupted):
        train_stage.run(params, MODEL, root)
    assert load_checkpoint(last)["iteration"] == 6
    monkeypatch.setattr(training_run, "train", real_train)
    capsys.readouterr()
    resumed = train_stage.run(params, MODEL, root)
    assert "resuming the interrupted run" in capsys.readouterr().out
    assert resumed.final_iteration == params.train.iterations
    _assert_same_weights(last, reference / "last.pt")

    # A finished run found again means DVC saw a change (code, data): train again from scratch,
    # which reproduces the run because initial weights and batches are seeded.
    train_stage.run(params, MODEL, root)
    assert "is a finished run; training from scratch" in capsys.readouterr().out
    _assert_same_weights(last, reference / "last.pt")

    # Other settings (here the length, which reshapes the schedule): from scratch, saying so.
    longer = params.model_copy(
        update={"train": params.train.model_copy(update={"iterations": params.train.iterations + 6})}
    )
    restarted = train_stage.run(longer, MODEL, root)
    assert "written under other settings or data; training from scratch" in capsys.readouterr().out
    assert restarted.history[0]["iteration"] <= params.train.log_every
    assert load_checkpoint(last)["config"]["iterations"] == longer.train.iterations


def test_evaluate_refuses_a_checkpoint_of_another_scale(project, monkeypatch):
    root, params = project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    checkpoint = root / params.paths.models / MODEL / "best.pt"
    if not checkpoint.exists():
        train_stage.run(params, MODEL, root)
    model = trained_model(checkpoint, params.scale)
    assert not model.training and model.upscale == params.scale
    with pytest.raises(ValueError, match=rf"trained at x{params.scale} but this pipeline evaluates x3"):
        trained_model(checkpoint, 3)
