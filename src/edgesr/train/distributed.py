"""``torchrun`` helpers: who this process is, which device it owns, and the process group.

``torchrun`` exports ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single
process. With more than one process the group uses NCCL on GPUs and gloo on CPUs, each process driving
the GPU of its local rank, and BatchNorm layers normalise over the global batch (:func:`sync_batch_norm`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce

from edgesr.errors import UsageError

__all__ = ["CpuSyncBatchNorm", "DistributedContext", "distributed_context", "resolve_device", "sync_batch_norm"]

DeviceChoice = Literal["auto", "cpu", "cuda"]
T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, logs to the tracker and shows the progress bar."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: DeviceChoice = "auto") -> DistributedContext:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (single process when unset); no group is created."""
        rank = _env_int("RANK", 0)
        world_size = _env_int("WORLD_SIZE", 1)
        local_rank = _env_int("LOCAL_RANK", 0)
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
        return cls(rank, world_size, local_rank, resolve_device(device, local_rank))

    def barrier(self) -> None:
        """Wait for every process (no-op for a single process)."""
        if self.is_distributed and dist.is_initialized():
            dist.barrier()

    def broadcast_from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every process (any picklable object; ``value`` itself for a single process).

        Every process must call it; the others wait here until rank 0 has called it.
        """
        if not (self.is_distributed and dist.is_initialized()):
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def resolve_device(device: DeviceChoice, local_rank: int = 0) -> torch.device:
    """``auto`` -> the GPU of ``local_rank`` when CUDA is available, else the CPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device is 'cuda' but no CUDA device is available here; set it to 'auto' or 'cpu'")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


@contextmanager
def distributed_context(device: DeviceChoice = "auto") -> Iterator[DistributedContext]:
    """The process's :class:`DistributedContext`, with the process group set up when needed.

    Initialises the default group (``nccl`` on CUDA, ``gloo`` on CPU) when ``WORLD_SIZE > 1`` and nobody
    has done so yet, and destroys it on exit only if it was created here, so callers that manage their
    own group keep it.
    """
    ctx = DistributedContext.from_env(device)
    created = False
    if ctx.is_distributed and not dist.is_initialized():
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        dist.init_process_group(
            backend="nccl" if ctx.device.type == "cuda" else "gloo",
            rank=ctx.rank,
            world_size=ctx.world_size,
            # Binding the group to the device lets NCCL set up its communicator eagerly.
            device_id=ctx.device if ctx.device.type == "cuda" else None,
        )
        created = True
    try:
        yield ctx
    finally:
        if created:
            dist.destroy_process_group()


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over the global batch for processes on CPUs (gloo), where torch's SyncBatchNorm does not run.

    In training the per-channel mean and variance of the global batch come from differentiable
    all-reduces (:func:`torch.distributed.nn.functional.all_reduce`), so the output and its gradient
    equal BatchNorm over the whole global batch, as in one process; in evaluation it is plain BatchNorm.
    """

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        dims, shape = [0, 2, 3], [1, -1, 1, 1]
        sums = all_reduce(torch.cat([input.sum(dims), input.new_tensor([input[:, 0].numel()])]))
        count = sums[-1]
        mean = sums[:-1] / count
        centered = input - mean.view(shape)
        var = all_reduce(centered.square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.item())
        output = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            output = output * self.weight.view(shape)
        return output if self.bias is None else output + self.bias.view(shape)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: float) -> None:
        """BatchNorm's update: the running variance is the unbiased one, ``momentum=None`` a cumulative mean."""
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        assert tracked is not None and running_mean is not None and running_var is not None, "track_running_stats"
        tracked.add_(1)
        momentum = 1.0 / tracked.item() if self.momentum is None else self.momentum
        running_mean.lerp_(mean, momentum)
        running_var.lerp_(var * count / (count - 1), momentum)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with its BatchNorm layers normalising over the global batch of all processes.

    On GPUs :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` replaces the layers in place (a bare
    BatchNorm ``model`` is returned as a new layer), sharing their parameters and buffers, so the state
    dict keeps its keys. torch's SyncBatchNorm does not run on CPUs (its kernel refuses CPU tensors and
    DistributedDataParallel refuses it on CPU modules), so there every ``BatchNorm2d`` becomes a
    :class:`CpuSyncBatchNorm`, the same layer with a synchronised forward (the SR models here have no
    other BatchNorm).
    """
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for layer in model.modules():
        if type(layer) is nn.BatchNorm2d:
            layer.__class__ = CpuSyncBatchNorm
    return model


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name} must be an integer, got {value!r}") from None
