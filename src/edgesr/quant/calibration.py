"""Calibration data for post-training quantization: LR patches that cover the whole input domain.

Paper 003 (Sec. 4.3) quantizes XLSR with standard post-training quantization on training data, and
Sec. 3.2 names the failure to avoid: an activation range that does not cover the values carrying
signal. With min/max range estimation (:mod:`edgesr.quant.openvino_ptq`) a range is exactly what the
calibration patches reach, so patches drawn from a few photographs alone leave every range short of
what flat white, saturated colour or pitch-dark input produces, and those inputs clip (issue 9:
a white image came back striped). The calibration set therefore mixes three sources, all seeded:

- **training crops** from the same sampler as training (random position and dihedral transform), as
  paper 003 does;
- **the same crops re-exposed** (paper 003 Sec. 4.1 augments intensity for the same reason): a gain
  above one that clips highlights to 1, or below one that crushes the image into the dark end;
- **synthetic patches** for what photographs rarely hold: flat patches of random and extreme colours
  (0 and 1 per channel included), sharp edges between extreme colours, colour ramps and
  one-to-four-pixel checkerboards.

The stress suite (:mod:`edgesr.data.stress`) that checks the result is generated independently:
fixed images, fixed levels, real photographs not used here.
"""

from __future__ import annotations

import numpy as np

from edgesr.data.patches import PatchSampler

__all__ = ["calibration_patches", "synthetic_patches"]

_BRIGHT_GAIN = (1.3, 3.0)
_DARK_GAIN = (0.05, 0.5)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour in [0, 1] whose channels are each 0, 1 or uniform (saturated and extreme colours)."""
    return np.where(rng.random(3) < 0.6, rng.choice([0.0, 1.0], 3), rng.random(3))


def _synthetic(rng: np.random.Generator, kind: int, side: int) -> np.ndarray:
    """One (3, side, side) patch: 0 flat, 1 step edge, 2 ramp, 3 checkerboard, each between random colours."""
    first, second = _colour(rng)[:, None, None], _colour(rng)[:, None, None]
    rows, cols = np.mgrid[:side, :side].astype(np.float64)
    if kind == 0:
        weight = np.zeros((side, side))
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        weight = (np.cos(angle) * (cols - side / 2) + np.sin(angle) * (rows - side / 2) > rng.uniform(-4, 4)) * 1.0
    elif kind == 2:
        weight = cols / (side - 1) if rng.random() < 0.5 else rows / (side - 1)
    else:
        period = int(rng.integers(1, 5))
        weight = ((rows // period + cols // period) % 2).astype(np.float64)
    return first * (1 - weight) + second * weight


def synthetic_patches(count: int, patch: int, seed: int) -> list[np.ndarray]:
    """``count`` float32 (1, 3, ``patch``, ``patch``) patches in [0, 1]: flats, edges, ramps, checkerboards
    in random extreme and saturated colours, the four kinds in turn."""
    rng = np.random.default_rng(seed)
    return [np.ascontiguousarray(_synthetic(rng, i % 4, patch)[None], dtype=np.float32) for i in range(count)]


def calibration_patches(
    pairs: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    count: int,
    patch: int,
    seed: int,
    exposed_fraction: float = 0.25,
    synthetic_fraction: float = 0.25,
) -> list[np.ndarray]:
    """``count`` float32 LR patches of shape (1, 3, ``patch``, ``patch``) in [0, 1] from (name, LR, HR) pairs.

    ``synthetic_fraction`` of them are :func:`synthetic_patches`, ``exposed_fraction`` are training crops
    under a random bright or dark gain (clipped to [0, 1]), the rest are training crops as they are.
    """
    if count < 1:
        raise ValueError(f"need at least one calibration patch, got {count}")
    if exposed_fraction < 0 or synthetic_fraction < 0 or exposed_fraction + synthetic_fraction > 1:
        raise ValueError(
            f"exposed_fraction {exposed_fraction} and synthetic_fraction {synthetic_fraction} must be >= 0 "
            "and sum to at most 1"
        )
    synthetic = int(round(count * synthetic_fraction))
    crops = count - synthetic
    exposed = min(int(round(count * exposed_fraction)), crops)
    if crops == 0:
        return synthetic_patches(synthetic, patch, seed)
    sampler = PatchSampler([(lr, hr) for _, lr, hr in pairs], scale, patch, seed)
    lr = sampler.batch(0, crops)[0].numpy()
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])  # not the synthetic patches' stream
    bright = rng.random(exposed) < 0.5
    gains = np.where(bright, rng.uniform(*_BRIGHT_GAIN, exposed), rng.uniform(*_DARK_GAIN, exposed))
    lr[:exposed] = np.clip(lr[:exposed] * gains[:, None, None, None].astype(np.float32), 0.0, 1.0)
    patches = [np.ascontiguousarray(lr[i : i + 1]) for i in range(crops)]
    return patches + synthetic_patches(synthetic, patch, seed)
