"""Would one conv for every reader of the RGB input make the S subnet faster in OpenVINO int8? (issue 13 item 1)

The default S's deploy form has three convs that read the 3-channel input: the head (3x3, ``3 -> 32``), the
first block composed with it (5x5, ``3 -> 8``, tanh) and the bicubic skip's polyphase conv (5x5, ``3 -> 12``).
Profiled on an Intel AMX machine they take 4.2 of S's 15 ms at 70-160 GMAC/s, while its wide convs run at
800. This probe builds a network of S's shapes (head, tanh part, a ``8 -> 3`` residual write appended to the
trunk, after-body ``35 -> 32``, ``conv_last`` ``32 -> 12``, skip added before the single DepthToSpace) two
ways: the three readers as they are, and fused into one 5x5 conv ``3 -> 52`` (the head's 3x3 kernel zero-padded
to 5x5, the same function: checked in float) whose output is sliced into the three. Both are quantized as
the pipeline does (:func:`edgesr.deploy.network_bench.network_runner`) and timed round-robin on a 640x360 input.

    python benchmarks/rgb_reader_fusion.py [--rounds 60] [--threads 2] [--settle 30]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesr.deploy.network_bench import network_runner
from edgesr.files import write_json
from edgesr.search.latency_table import lr_size
from edgesr.search.network_latency import time_round_robin

LR_HW = lr_size(2)  # the LR frame of a 1280x720 output at x2
HEAD, TANH, SKIP = 32, 8, 12  # the default S's RGB readers' output channels


class SeparateReaders(nn.Module):
    """S's shapes with the head, the first block's tanh part and the skip as three convs on the input."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, HEAD, 3, padding=1)
        self.tanh_part = nn.Conv2d(3, TANH, 5, padding=2)
        self.skip = nn.Conv2d(3, SKIP, 5, padding=2)
        self.residual = nn.Conv2d(TANH, 3, 3, padding=1)
        self.after_body = nn.Conv2d(HEAD + 3, HEAD, 3, padding=1)
        self.last = nn.Conv2d(HEAD, SKIP, 3, padding=1)

    def readers(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.head(x), self.tanh_part(x), self.skip(x)

    def forward(self, x: Tensor) -> Tensor:
        head, tanh_part, skip = self.readers(x)
        trunk = torch.cat([head, self.residual(torch.tanh(tanh_part))], dim=1)
        return F.pixel_shuffle(self.last(F.relu(self.after_body(trunk))) + skip, 2)


class FusedReaders(SeparateReaders):
    """The same function with the three readers as one 5x5 conv ``3 -> 52`` and channel slices."""

    def __init__(self, separate: SeparateReaders) -> None:
        super().__init__()
        self.load_state_dict(separate.state_dict())
        self.fused = nn.Conv2d(3, HEAD + TANH + SKIP, 5, padding=2)
        with torch.no_grad():
            weight = torch.zeros_like(self.fused.weight)
            weight[:HEAD, :, 1:4, 1:4] = separate.head.weight
            weight[HEAD : HEAD + TANH] = separate.tanh_part.weight
            weight[HEAD + TANH :] = separate.skip.weight
            self.fused.weight.copy_(weight)
            self.fused.bias.copy_(torch.cat([separate.head.bias, separate.tanh_part.bias, separate.skip.bias]))

    def readers(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.fused(x)
        return out[:, :HEAD], out[:, HEAD : HEAD + TANH], out[:, HEAD + TANH :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before timing (see latency.py)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rgb_reader_fusion.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    separate = SeparateReaders().eval()
    models = {"separate": separate, "fused": FusedReaders(separate).eval()}
    x = np.random.default_rng(0).random((1, 3, *LR_HW), dtype=np.float32)
    with torch.no_grad():
        outputs = [model(torch.from_numpy(x[:, :, :64, :64])) for model in models.values()]
    float_difference = float((outputs[0] - outputs[1]).abs().max())
    assert float_difference < 1e-5, f"the fused readers compute another function (max difference {float_difference})"
    runners = [network_runner(model, LR_HW, precision="int8", threads=args.threads) for model in models.values()]
    medians = time_round_robin(runners, x, args.rounds, 3, "separate vs fused", settle_s=args.settle)
    for name, ms in zip(models, medians, strict=True):
        print(f"{name:9s} {ms:7.2f} ms")
    write_json(
        args.out,
        {
            "input_hw": list(LR_HW),
            "threads": args.threads,
            "rounds": args.rounds,
            "cpu": platform.processor() or platform.machine(),
            "float_max_difference": float_difference,
            "openvino_int8_ms": dict(zip(models, medians, strict=True)),
            "fused_over_separate": medians[1] / medians[0],
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
