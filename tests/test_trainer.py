"""Training loop: exact resume, checkpoint format, validation PSNR, config checks and DDP equivalence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from edgesr.data.patches import PatchSampler
from edgesr.errors import UsageError
from edgesr.metrics import psnr_y
from edgesr.train.settings import CosineSchedule, CyclicSchedule
from edgesr.train.trainer import (
    CHECKPOINT_FORMAT,
    TrainResult,
    checkpoint_state,
    load_checkpoint,
    load_model_weights,
    train,
)
from tests.ddp_worker import DDP_CONFIG, SCALE, Interrupted, interrupt_at, run, tiny_config, tiny_data, tiny_model

WORKER = Path(__file__).with_name("ddp_worker.py")


class _RecordingTracker:
    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: list[str] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path).name)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult, _RecordingTracker]:
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    tracker = _RecordingTracker()
    return out_dir, run(out_dir, tracker=tracker), tracker


def test_interrupted_run_resumes_to_the_same_weights_and_history(uninterrupted, tmp_path: Path) -> None:
    # given a run interrupted after iteration 12, whose last checkpoint is at iteration 10
    out_dir, reference, _ = uninterrupted
    with pytest.raises(Interrupted):
        run(tmp_path, on_iteration=interrupt_at(12))
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 10

    # when it is started again
    seen: list[int] = []
    resumed = run(tmp_path, on_iteration=seen.append)

    # then it continues at iteration 11 and ends exactly where the uninterrupted run ended
    assert seen == list(range(11, 21))
    final, expected = _weights(tmp_path / "last.pt"), _weights(out_dir / "last.pt")
    assert all(torch.equal(final[name], expected[name]) for name in expected)
    assert resumed.history == reference.history
    assert (resumed.best_psnr, resumed.best_iteration) == (reference.best_psnr, reference.best_iteration)
    assert json.loads((tmp_path / "history.json").read_text())["history"] == reference.history


def test_finished_run_returns_from_its_checkpoint(uninterrupted) -> None:
    out_dir, reference, _ = uninterrupted
    before = (out_dir / "last.pt").stat().st_mtime_ns
    seen: list[int] = []

    again = run(out_dir, on_iteration=seen.append)

    assert seen == []
    assert again == reference
    assert (out_dir / "last.pt").stat().st_mtime_ns == before


def test_checkpoints_load_with_weights_only_and_hold_the_run(uninterrupted) -> None:
    out_dir, result, _ = uninterrupted

    last = torch.load(out_dir / "last.pt", weights_only=True)
    best = torch.load(out_dir / "best.pt", weights_only=True)

    assert last["iteration"] == 20 and result.final_iteration == 20
    assert best["iteration"] == result.best_iteration == best["best_iteration"]
    assert best["best_psnr"] == result.best_psnr == max(e["val_psnr"] for e in result.history if e["val_psnr"])
    assert last["metadata"] == {"model": "tiny", "scale": 2} and last["scale"] == SCALE
    assert last["config"] == tiny_config().model_dump(mode="json")
    assert set(last["model"]) == set(tiny_model().state_dict())
    assert [e["iteration"] for e in last["history"]] == [2, 4, 5, 6, 8, 10, 12, 14, 15, 16, 18, 20]
    assert [e["iteration"] for e in last["history"] if e["val_psnr"] is not None] == [5, 10, 15, 20]
    assert last["scheduler"]["last_epoch"] == 20 and len(last["optimizer"]["state"]) == 4


def test_a_checkpoint_of_another_format_is_refused_and_never_resumed(uninterrupted, tmp_path: Path) -> None:
    # given the finished run's last.pt rewritten as format 1 (FGNAS weights from before the extended head)
    out_dir, _, _ = uninterrupted
    old = torch.load(out_dir / "last.pt", weights_only=True) | {"format": 1}
    torch.save(old, tmp_path / "last.pt")
    assert CHECKPOINT_FORMAT == 2

    # then loading it names both formats and the fix, instead of running other weights silently
    with pytest.raises(UsageError, match=r"format 1, this edgesr reads format 2 .*`dvc repro`"):
        load_checkpoint(tmp_path / "last.pt")
    # and a stage that finds it with the same settings trains from scratch rather than resuming or keeping it
    assert checkpoint_state(tmp_path, tiny_config(), SCALE, {"model": "tiny", "scale": 2}) == "other-settings"
    assert checkpoint_state(out_dir, tiny_config(), SCALE, {"model": "tiny", "scale": 2}) == "finished"


def test_validation_psnr_equals_psnr_y_of_the_saved_model(uninterrupted) -> None:
    # given the model saved in best.pt
    out_dir, result, _ = uninterrupted
    model = load_model_weights(tiny_model(seed=99), out_dir / "best.pt").eval()
    _, val_pairs = tiny_data()

    # when its output is scored by hand: clamp, *255, round to uint8, PSNR-Y with a `scale` border
    scores = []
    for _, lr, hr in val_pairs:
        with torch.no_grad():
            sr = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0]
        sr_uint8 = (sr.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        scores.append(psnr_y(sr_uint8, hr, crop_border=SCALE))

    # then the mean equals the recorded best validation PSNR
    assert float(np.mean(scores)) == pytest.approx(result.best_psnr, abs=1e-9)


def test_tracker_gets_losses_validation_and_files(uninterrupted) -> None:
    _, result, tracker = uninterrupted

    loss_steps = [step for step, metrics in tracker.metrics if "train/loss" in metrics]
    val = {step: metrics["val/psnr_y"] for step, metrics in tracker.metrics if "val/psnr_y" in metrics}

    assert loss_steps == list(range(2, 21, 2))
    assert all("train/lr" in metrics for _, metrics in tracker.metrics if "train/loss" in metrics)
    assert val == {e["iteration"]: e["val_psnr"] for e in result.history if e["val_psnr"] is not None}
    assert sorted(tracker.artifacts) == ["best.pt", "history.json", "last.pt"]


def test_resume_with_changed_settings_names_them(tmp_path: Path) -> None:
    run(tmp_path, iterations=5)

    with pytest.raises(ValueError, match=r"train\.lr: 0\.005 -> 0\.001.*Delete .* or restore"):
        run(tmp_path, iterations=5, lr=1e-3)


def test_resume_may_change_device_and_threads(tmp_path: Path) -> None:
    run(tmp_path, iterations=5, checkpoint_every=5)

    result = run(tmp_path, iterations=5, threads=torch.get_num_threads(), device="auto")

    assert result.final_iteration == 5


def test_global_batch_must_split_over_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")

    with pytest.raises(ValueError, match=r"batch_size=4 is the global batch .* 3 processes"):
        run(tmp_path)


def test_sampler_must_match_the_run(tmp_path: Path) -> None:
    cfg = tiny_config()
    train_pairs, val_pairs = tiny_data()
    sampler = PatchSampler(train_pairs, SCALE, lr_patch=6, seed=cfg.seed)

    with pytest.raises(ValueError, match="lr_patch: sampler 6, run 8"):
        train(tiny_model(), sampler, val_pairs, cfg, SCALE, tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"iterations": 0}, "greater than or equal to 1"),
        ({"betas": (0.9, 1.0)}, r"betas must lie in \[0, 1\)"),
        ({"scheduler": {"type": "step", "milestones": [5, 30]}}, "must all be below iterations"),
        ({"scheduler": {"type": "cosine", "eta_min": 1.0}}, "must not exceed lr"),
        ({"optimiser": "sgd"}, "Extra inputs are not permitted"),
        ({"grad_clip": 0.0}, "greater than 0"),
    ],
)
def test_invalid_train_config_is_rejected(override: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        tiny_config(**override)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """tests/ddp_worker.py on 2 gloo processes (one thread each) with ``args``."""
    env = {key: value for key, value in os.environ.items() if key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), *args],
        env=env | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("model", "atol"), [("tiny", 1e-5), ("sam_sr", 1e-4)])
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path: Path, model: str, atol: float) -> None:
    # given the same tiny run on 2 gloo processes (4 patches each) and on 1 process (8 patches); SAM_SR
    # has BatchNorm, which the 2 processes synchronise over the global batch
    completed = _torchrun(str(tmp_path / "ddp"), "--model", model)
    assert completed.returncode == 0, completed.stderr[-4000:]
    single = run(tmp_path / "single", model=model, **DDP_CONFIG)

    # then gradient averaging over equal halves reproduces the single-process weights, BatchNorm
    # statistics and losses
    ddp, reference = load_checkpoint(tmp_path / "ddp" / "last.pt"), _weights(single.last_checkpoint)
    assert ddp["model"].keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(ddp["model"][name], tensor, rtol=0, atol=atol)
    assert ddp["iteration"] == 6
    assert [e["loss"] for e in ddp["history"]] == pytest.approx([e["loss"] for e in single.history], abs=1e-6)
    assert [e["val_psnr"] for e in ddp["history"]] == pytest.approx([e["val_psnr"] for e in single.history], abs=1e-4)


@pytest.mark.slow
def test_two_process_ddp_resumes_an_interrupted_run_and_restarts_another(tmp_path: Path) -> None:
    # given a 2-process run interrupted after iteration 4, its last checkpoint at iteration 3
    out_dir = tmp_path / "ddp"
    interrupted = _torchrun(str(out_dir), "--interrupt-at", "4")
    assert interrupted.returncode != 0 and "stopped after iteration 4" in interrupted.stderr
    assert load_checkpoint(out_dir / "last.pt")["iteration"] == 3

    # when it is started again, rank 0 decides to resume and both processes continue from iteration 3
    resumed = _torchrun(str(out_dir))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # substrings, not lines: the two processes share one stdout pipe, so their lines can interleave
    assert "rank 0: unfinished" in resumed.stdout and "rank 1: unfinished" in resumed.stdout
    single = run(tmp_path / "single", **DDP_CONFIG)
    final, reference = load_checkpoint(out_dir / "last.pt"), _weights(single.last_checkpoint)
    for name, tensor in reference.items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=0, atol=1e-5)
    assert [e["iteration"] for e in final["history"]] == [e["iteration"] for e in single.history]

    # and a run with other settings makes rank 0 remove the folder before any process reads it
    restarted = _torchrun(str(out_dir), "--lr", "5e-3")
    assert restarted.returncode == 0, restarted.stderr[-4000:]
    assert "rank 0: other-settings" in restarted.stdout and "rank 1: other-settings" in restarted.stdout
    assert load_checkpoint(out_dir / "last.pt")["config"]["lr"] == 5e-3


@pytest.mark.parametrize(
    "schedule",
    [CosineSchedule(eta_min=1e-4), CyclicSchedule(base_lr=1e-4, max_lr=5e-3, final_lr=1e-4)],
    ids=["cosine", "cyclic"],
)
def test_lr_scale_gives_each_parameter_its_factor_of_the_scheduled_rate(tmp_path, schedule):
    """Factor 0 freezes the biases, factor 10 runs the last conv's weight at ten times the schedule's rate, also
    under schedules written in absolute rates (cosine's eta_min, the cyclic corners: cpu-long's recipe)."""
    train_pairs, val_pairs = tiny_data()
    cfg = tiny_config(iterations=3, scheduler=schedule)
    model = tiny_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    factors = {"0.bias": 0.0, "2.bias": 0.0, "2.weight": 10.0}
    result = train(
        model,
        PatchSampler(train_pairs, SCALE, cfg.lr_patch, cfg.seed),
        val_pairs,
        cfg,
        SCALE,
        tmp_path,
        lr_scale=lambda name: factors.get(name, 1.0),
    )
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter.detach(), before[name])
        assert moved == (factors.get(name, 1.0) > 0), name
    groups = torch.load(result.last_checkpoint, weights_only=True)["optimizer"]["param_groups"]
    assert [group["initial_lr"] for group in groups] == pytest.approx([cfg.lr, 0.0, 10 * cfg.lr])
    end = groups[0]["lr"]
    assert end > 0 and [group["lr"] for group in groups] == pytest.approx([end, 0.0, 10 * end], rel=1e-12)


def _first_moment_norm(checkpoint: Path, beta1: float) -> float:
    """The global L2 norm of the gradient Adam stepped with at iteration 1: its first moment is (1 - beta1) g."""
    state = load_checkpoint(checkpoint)["optimizer"]["state"].values()
    return float(torch.linalg.vector_norm(torch.cat([s["exp_avg"].flatten() for s in state]))) / (1 - beta1)


def test_grad_clip_scales_the_gradient_to_the_given_global_norm_before_the_adam_step(tmp_path: Path) -> None:
    # given the same first iteration without clipping and with a limit far below its gradient's norm
    free = run(tmp_path / "free", iterations=1, checkpoint_every=1)
    clipped = run(tmp_path / "clipped", iterations=1, checkpoint_every=1, grad_clip=1e-3)
    beta1 = tiny_config().betas[0]
    free_norm = _first_moment_norm(free.last_checkpoint, beta1)
    assert free_norm > 10 * 1e-3

    # then Adam saw the same gradient rescaled to norm 1e-3 (clip_grad_norm_: g * max_norm / (norm + 1e-6))
    free_moments = load_checkpoint(free.last_checkpoint)["optimizer"]["state"]
    clipped_moments = load_checkpoint(clipped.last_checkpoint)["optimizer"]["state"]
    for key, state in free_moments.items():
        torch.testing.assert_close(clipped_moments[key]["exp_avg"], state["exp_avg"] * (1e-3 / (free_norm + 1e-6)))
