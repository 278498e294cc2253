"""The CUDA path of the models, the search and the composition's classifier (skipped without a GPU).

Each check runs the same computation on the CPU and on the GPU and compares: only the floating-point
summation order differs between the devices. Imports stay below the trainer (no MLflow), so the file also
runs on an accelerator machine that has PyTorch and pydantic only.
"""

from __future__ import annotations

import pytest
import torch

from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.grid import patch_grid
from edgesr.deploy.fgnas_form import deploy_form
from edgesr.models import PlainResNetConfig, build_model
from edgesr.search.budget import SearchObjective
from edgesr.search.extract import extract_subnet
from edgesr.search.settings import MultAddsBudget, SupernetConfig
from edgesr.search.supernet import Supernet

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    pytest.mark.usefixtures("full_fp32_on_cuda"),
]
CUDA = torch.device("cuda")


def _supernet(seed: int) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(SupernetConfig(num_blocks=3, width=16, bicubic_skip=True), 2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi.copy_(torch.rand(psi.shape, generator=generator))
    return net


def test_search_step_on_cuda_matches_cpu() -> None:
    """Eq. 2's objective (L1 + lambda R, R of Eq. 3) and its straight-through gate gradients on both devices."""
    x, hr = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 32, 32)
    grads = {}
    for device in ("cpu", "cuda"):
        net = _supernet(0).to(device)
        objective = SearchObjective(MultAddsBudget(target_g=1.0), lambda m: m.mult_adds(), net.mult_adds().item(), 10)
        l1 = (net(x.to(device)) - hr.to(device)).abs().mean()
        objective(net, l1, 0).backward()
        grads[device] = [p.grad.cpu() for p in net.gate_parameters()]
    for cpu, cuda in zip(grads["cpu"], grads["cuda"], strict=True):
        torch.testing.assert_close(cuda, cpu, atol=1e-5, rtol=1e-3)


def test_deploy_form_on_cuda_matches_the_subnet() -> None:
    subnet = extract_subnet(_supernet(1)).to(CUDA).eval()
    x = torch.rand(2, 3, 19, 23, device=CUDA)
    with torch.no_grad():
        deployed = deploy_form(subnet)
        assert next(deployed.parameters()).device.type == "cuda"
        torch.testing.assert_close(deployed(x), subnet(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(deployed(x).cpu(), subnet.cpu()(x.cpu()), atol=1e-4, rtol=0)


def test_plain_resnet_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(PlainResNetConfig(width=16, num_blocks=2, skip="bicubic"), 3).eval()
    x = torch.rand(1, 3, 20, 17)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(model.to(CUDA)(x.to(CUDA)).cpu(), expected, atol=1e-4, rtol=0)


def test_classifier_whole_image_pass_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    classifier = PatchClassifier(3).eval()
    image = torch.rand(1, 3, 70, 95)
    grid = patch_grid(70, 95, 32, 28)
    expected = classifier.grid_logits(image, grid)
    logits = classifier.to(CUDA).grid_logits(image.to(CUDA), grid)
    torch.testing.assert_close(logits.cpu(), expected, atol=1e-4, rtol=1e-4)
