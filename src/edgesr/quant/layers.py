"""PyTorch module paths (``conv_last``) -> the ONNX / OpenVINO nodes a runtime's quantizer knows.

:func:`edgesr.deploy.export.export_onnx` keeps each node's module path, so ``quantize.ignored_layers``
is written in the names of the PyTorch model, the same for both runtimes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import nncf
import onnx

from edgesr.deploy.export import module_paths
from edgesr.errors import UsageError

__all__ = ["float_module_nodes", "ignored_nodes", "module_nodes", "openvino_ignored_scope", "openvino_skip_nodes"]


def module_nodes(proto: onnx.ModelProto, module: str) -> list[str]:
    """ONNX node names of ``module`` and its submodules (``bicubic`` covers ``bicubic.pixel_shuffle``)."""
    return [node for node, path in module_paths(proto).items() if path == module or path.startswith(f"{module}.")]


def _sums_of(proto: onnx.ModelProto, nodes: Sequence[str]) -> list[str]:
    """Each ``Add`` outside ``nodes`` that sums one of their outputs into the network (the skip's ``out + skip(x)``)."""
    kept = set(nodes)
    outputs = {name for node in proto.graph.node if node.name in kept for name in node.output}
    return [
        node.name
        for node in proto.graph.node
        if node.op_type == "Add" and outputs & set(node.input) and node.name not in kept
    ]


def float_module_nodes(proto: onnx.ModelProto, modules: Sequence[str]) -> list[str]:
    """ONNX nodes kept in float for ``quantize.float_modules``: every node of those modules and each ``Add`` that
    sums one of their outputs into the network (the skip's ``out + skip(x)``).

    The ``Add`` has to stay in float as well: NNCF and ONNX Runtime put an 8-bit quantizer on both inputs of an
    int8 ``Add``, which rounds the float skip's output back to 8 bits (issue 13: the default S subnet's flat
    images moved by one level, and its OpenVINO int8 drop was 0.08 / 0.04 dB on Set5 / Set14 against 0.02 /
    0.01 with its ``Add`` in float). The int8 conv before the ``Add`` then writes float output, which
    OpenVINO still fuses with the ``Add`` (a sum post-op).
    """
    nodes = [node for module in modules for node in module_nodes(proto, module)]
    return nodes + _sums_of(proto, nodes)


def openvino_skip_nodes(proto: onnx.ModelProto, modules: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(float nodes, exact int8 convs)`` of ``quantize.float_modules`` for OpenVINO.

    A module computed by one conv (the deploy form's :class:`edgesr.models.bicubic.BicubicPhases`, after its
    padding) runs in int8 on taps NNCF keeps exactly (:func:`edgesr.quant.exact_skip.make_skip_exact`); only
    its ``Add`` stays in float, so its output is not rounded to 8 bits. Any other module (the two-pass
    :class:`edgesr.models.bicubic.Bicubic`) stays in float with its ``Add``, as :func:`float_module_nodes`.
    """
    convs = {node.name for node in proto.graph.node if node.op_type == "Conv"}
    floats: list[str] = []
    exact: list[str] = []
    for module in modules:
        nodes = module_nodes(proto, module)
        own = [node for node in nodes if node in convs]
        if len(own) == 1:
            exact += own
            floats += _sums_of(proto, nodes)
        else:
            floats += float_module_nodes(proto, [module])
    return floats, exact


def ignored_nodes(proto: onnx.ModelProto, layers: list[str], model_name: str) -> list[str]:
    """ONNX node names of the given layers: module paths (``body.0`` covers ``body.0.conv``) or ONNX node
    names (for functional ops outside any module, such as ``torch.cat`` in ``forward``: ``node_cat``).

    Raises ``ValueError`` naming every layer that matches no node, with the module paths that exist.
    """
    node_names = {node.name for node in proto.graph.node}
    nodes, unknown = [], []
    for layer in layers:
        found = module_nodes(proto, layer)
        found += [layer] if layer in node_names and layer not in found else []
        if not found:
            unknown.append(layer)
        nodes += found
    if unknown:
        known = sorted(set(module_paths(proto).values()))
        raise UsageError(
            f"quantize.ignored_layers.{model_name}: no layer {', '.join(map(repr, unknown))} in the exported "
            f"model; its layers are: {', '.join(known)}"
        )
    return nodes


def openvino_ignored_scope(onnx_nodes: list[str]) -> nncf.IgnoredScope | None:
    """NNCF scope for an IR converted from ONNX: OpenVINO names ops ``<onnx node>`` or ``<onnx node>/...``."""
    if not onnx_nodes:
        return None
    patterns = [f"^{re.escape(node)}(/.*)?$" for node in onnx_nodes]
    return nncf.IgnoredScope(patterns=patterns, validate=False)
