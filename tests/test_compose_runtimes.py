"""Composed inference on the deployment runtimes: exported branches run a batch of patches per call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.architectures import ESPCNConfig, FSRCNNConfig
from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.compiled import OpenVINOClassifier
from edgesr.compose.composed import ComposedModel
from edgesr.compose.edge import EdgeRouter, EdgeTable
from edgesr.compose.grid import patch_grid
from edgesr.compose.runners import onnxruntime_batch_runner, openvino_batch_runner, torch_batch_runner
from edgesr.deploy.export import export_onnx, export_openvino, prepare_for_export
from edgesr.models import build_model

SCALE, PATCH, CHUNK = 2, 32, 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two small zoo models exported as the export stage does (batch 1, dynamic H and W)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("compose_export")
    models, files = [], []
    for index, cfg in enumerate([ESPCNConfig(n1=8, n2=4), FSRCNNConfig(d=12, s=4, m=1)]):
        model = prepare_for_export(build_model(cfg, SCALE))
        onnx_path = export_onnx(model, folder / f"{index}" / "model.onnx")
        files.append((onnx_path, export_openvino(onnx_path, folder / f"{index}")["fp32"]))
        models.append(model)
    return models, files


def test_batch_runners_of_every_runtime_agree_with_pytorch(exported):
    models, files = exported
    patches = np.random.default_rng(0).random((7, 3, PATCH, PATCH), dtype=np.float32)  # 7 = 4 + 3: a filled chunk
    for model, (onnx_path, xml_path) in zip(models, files, strict=True):
        expected = torch_batch_runner(model, CHUNK)(patches)
        assert expected.shape == (7, 3, SCALE * PATCH, SCALE * PATCH)
        np.testing.assert_allclose(onnxruntime_batch_runner(onnx_path, 1, CHUNK)(patches), expected, atol=1e-4)
        np.testing.assert_allclose(openvino_batch_runner(xml_path, 1, CHUNK, PATCH)(patches), expected, atol=1e-4)


def test_composed_model_on_openvino_and_onnxruntime_equals_pytorch(exported):
    models, files = exported
    table = EdgeTable(edges=[3.0], psnr=[[30.0, 20.0], [20.0, 30.0]], costs=[0.5, 1.0])
    image = np.random.default_rng(1).random((1, 3, 45, 70), dtype=np.float32)
    image[:, :, :, :35] = 0.5  # a flat half (branch 0) and a noisy half (branch 1)
    router = EdgeRouter(table, eta=0.0)
    reference = ComposedModel([torch_batch_runner(m, CHUNK) for m in models], router, SCALE).compose(image)
    assert 0 < reference.routes.sum() < len(reference.routes)
    runtimes = {
        "onnxruntime": [onnxruntime_batch_runner(onnx_path, 1, CHUNK) for onnx_path, _ in files],
        "openvino": [openvino_batch_runner(xml_path, 1, CHUNK, PATCH) for _, xml_path in files],
    }
    for branches in runtimes.values():
        result = ComposedModel(branches, router, SCALE).compose(image)
        np.testing.assert_array_equal(result.routes, reference.routes)
        np.testing.assert_allclose(result.sr, reference.sr, atol=1e-4)


def test_the_classifier_compiled_by_openvino_routes_as_pytorch():
    torch.manual_seed(0)
    classifier = PatchClassifier(3).eval()
    image = np.random.default_rng(2).random((1, 3, 70, 93), dtype=np.float32)
    grid = patch_grid(70, 93, PATCH, 28)
    compiled = OpenVINOClassifier(classifier, threads=1)
    expected = classifier.grid_logits(torch.from_numpy(image), grid)
    torch.testing.assert_close(
        classifier.grid_logits(torch.from_numpy(image), grid, compiled._features), expected, atol=1e-4, rtol=1e-4
    )
    np.testing.assert_array_equal(compiled.route(np.empty(0), image, grid), classifier.route(np.empty(0), image, grid))
    assert compiled.mult_adds(grid) == classifier.mult_adds(grid) > 0  # the same work, counted once


def test_int8_batch_runners_equal_the_int8_model_run_one_patch_at_a_time(exported, tmp_path):
    """The quantize stage's int8 forms (ONNX Runtime QDQ, NNCF IR), opened to a batch of patches, give what
    the same int8 model gives each patch alone (what `edgesr upscale` runs)."""
    from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner
    from edgesr.quant.onnxruntime_ptq import quantize_onnxruntime
    from edgesr.quant.openvino_ptq import quantize_openvino

    _, files = exported
    onnx_path, xml_path = files[0]
    rng = np.random.default_rng(3)
    calibration = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]
    qdq = quantize_onnxruntime(onnx_path, calibration, tmp_path / "int8.onnx")
    ir = quantize_openvino(xml_path, calibration, tmp_path / "int8.xml")
    patches = rng.random((7, 3, PATCH, PATCH), dtype=np.float32)
    for batched, single in [
        (onnxruntime_batch_runner(qdq, 1, CHUNK), onnxruntime_runner(qdq, 1)),
        (openvino_batch_runner(ir, 1, CHUNK, PATCH), openvino_runner(ir, 1)),
    ]:
        one_by_one = np.concatenate([single(patches[i : i + 1]) for i in range(len(patches))])
        np.testing.assert_allclose(batched(patches), one_by_one, atol=1e-5)
