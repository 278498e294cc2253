"""The CUDA path of the trainer (skipped without a GPU): same API, resumable, checkpoints load on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgesr.train.trainer import load_checkpoint
from tests.ddp_worker import Interrupted, interrupt_at, run

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    pytest.mark.usefixtures("full_fp32_on_cuda"),
]


def test_cuda_training_matches_cpu_and_resumes(tmp_path: Path) -> None:
    cpu = run(tmp_path / "cpu", device="cpu")
    cuda = run(tmp_path / "cuda", device="cuda")
    cpu_weights, cuda_weights = (load_checkpoint(r.last_checkpoint)["model"] for r in (cpu, cuda))
    # same batches, same schedule: only floating-point summation order differs between devices
    for name, weight in cpu_weights.items():
        assert cuda_weights[name].device.type == "cpu"  # load_checkpoint maps to CPU
        torch.testing.assert_close(cuda_weights[name], weight, atol=2e-4, rtol=1e-3)
    assert cuda.best_psnr == pytest.approx(cpu.best_psnr, abs=0.05)

    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", device="cuda", on_iteration=interrupt_at(12))
    resumed = run(tmp_path / "resumed", device="cuda")
    for name, weight in load_checkpoint(resumed.last_checkpoint)["model"].items():
        torch.testing.assert_close(weight, cuda_weights[name], atol=1e-5, rtol=1e-5)
