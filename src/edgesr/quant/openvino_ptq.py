"""int8 post-training quantization of an OpenVINO IR with NNCF (``nncf.quantize``), full or accuracy-controlled.

Symmetric int8 weights (per output channel) and activations (preset ``PERFORMANCE``), every
convolution quantized, first and last included (paper 003 Sec. 2: the Mobile AI rule of full uint8).

Bias correction is NNCF's full ``BiasCorrection`` (``fast_bias_correction=False``): it measures every
layer's int8 output shift on the calibration set, flat and saturated patches included, and moves it into
the bias, which is what keeps a flat image's level. Against the fast variant it cut XLSR-linear's Set5
drop from 0.27 to 0.04 dB and its worst flat error from 3.1 to 2.6 levels (FSRCNN: 0.70 to 0.56 dB).
Activations stay symmetric (preset ``PERFORMANCE``): with asymmetric ones (``MIXED``) the S subnet lost
1.7 dB instead of 0.3 and OpenVINO crashed on FSRCNN's int8 model after a few input shapes.

Activation ranges use the plain min/max over the calibration set instead of NNCF's default (the mean
of per-sample minima and maxima). SR is regression: a dark 32x32 patch has a small maximum, and the
averaged range clips every bright one; on our XLSR it cost 2.5 dB PSNR-Y on Set5 against 0.01 dB with
min/max (measured for this module). Paper 003 Sec. 3.2 makes the same point about outliers: clipping
the range of the activations that carry signal is what ruins int8 SR.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
from nncf.quantization.range_estimator import RangeEstimatorParametersSet

from edgesr.data.images import as_image, as_input
from edgesr.deploy.export import save_openvino
from edgesr.metrics import mean_psnr, psnr_y
from edgesr.quant.exact_skip import make_skip_exact
from edgesr.quant.overflow import OverflowFix as OverflowFixSetting
from edgesr.quant.overflow import resolve_overflow_fix

__all__ = ["NNCF_OVERFLOW_FIX", "quantize_openvino", "quantize_openvino_with_accuracy_control"]


def _settings(calibration: list[np.ndarray]) -> dict:
    return {
        "preset": nncf.QuantizationPreset.PERFORMANCE,
        "target_device": nncf.TargetDevice.CPU,
        "subset_size": len(calibration),
        "fast_bias_correction": False,
    }


NNCF_OVERFLOW_FIX = {"all_layers": OverflowFix.ENABLE, "first_layer": OverflowFix.FIRST_LAYER}
"""NNCF's setting for each :data:`edgesr.quant.overflow.OverflowFix`."""


def _advanced(overflow_fix: OverflowFixSetting | None) -> AdvancedQuantizationParameters:
    # Never DISABLE: the int8-exact skip reads the model input, and its taps are written for the 7-bit grid that
    # both settings give the first layer.
    return AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        overflow_fix=NNCF_OVERFLOW_FIX[overflow_fix or resolve_overflow_fix()],
    )


def _read(fp32_xml: Path, exact_convs: Collection[str]) -> ov.Model:
    """The IR with the convs ``exact_convs`` made int8-exact skips (:mod:`edgesr.quant.exact_skip`)."""
    model = ov.Core().read_model(fp32_xml)
    if exact_convs:
        make_skip_exact(model, exact_convs)
    return model


def quantize_openvino(
    fp32_xml: Path,
    calibration: list[np.ndarray],
    out_xml: Path,
    ignored_scope: nncf.IgnoredScope | None = None,
    exact_convs: Collection[str] = (),
    overflow_fix: OverflowFixSetting | None = None,
) -> Path:
    """NNCF PTQ of ``fp32_xml`` on every calibration patch; writes the int8 IR to ``out_xml``.

    ``exact_convs``: fixed interpolation convs run in int8 on exactly kept taps (:mod:`edgesr.quant.exact_skip`);
    ``overflow_fix``: which convs get 7-bit weights (:mod:`edgesr.quant.overflow`; None: this CPU's choice).
    """
    model = _read(fp32_xml, exact_convs)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(calibration),
        ignored_scope=ignored_scope,
        advanced_parameters=_advanced(overflow_fix),
        **_settings(calibration),
    )
    return save_openvino(quantized, out_xml, compress_to_fp16=False)


def quantize_openvino_with_accuracy_control(
    fp32_xml: Path,
    calibration: list[np.ndarray],
    validation: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    max_drop: float,
    out_xml: Path,
    ignored_scope: nncf.IgnoredScope | None = None,
    exact_convs: Collection[str] = (),
    overflow_fix: OverflowFixSetting | None = None,
) -> Path:
    """``nncf.quantize_with_accuracy_control``: full int8 first, then the layers that cost most PSNR-Y on
    ``validation`` (name, LR, HR) pairs go back to float until the drop is at most ``max_drop`` dB
    (``exact_convs`` and ``overflow_fix`` as :func:`quantize_openvino`)."""

    def validate(compiled: ov.CompiledModel, items: Iterable[tuple[str, np.ndarray, np.ndarray]]):
        request = compiled.create_infer_request()
        scores = [psnr_y(as_image(request.infer({0: as_input(lr)})[0]), hr, scale) for _, lr, hr in items]
        return mean_psnr(scores), scores

    model = _read(fp32_xml, exact_convs)
    quantized = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(calibration),
        nncf.Dataset(validation),
        validate,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        ignored_scope=ignored_scope,
        advanced_quantization_parameters=_advanced(overflow_fix),
        **_settings(calibration),
    )
    return save_openvino(quantized, out_xml, compress_to_fp16=False)
