"""The content stress suite: LR images that benchmark sets rarely contain, where int8 models break first.

Set5 and Set14 hold few saturated, flat or very dark areas, so a quantization report measured on them
alone misses what happens when a calibration range clips (issue 9: the default int8 model striped a
white image while the report said 0.28 dB). Paper 003 Fig. 1 / 4 shows the same failure on real
photos: colour shifts and staircase gradients in quantized ESPCN and FSRCNN. The suite is generated,
deterministic and needs no download:

- flat images at grey levels 0 .. 255 and the six primary and secondary colours (saturated channels);
- a grey ramp over every level and a two-channel colour ramp (staircase gradients);
- a one-pixel-period and a 4-pixel checkerboard and black-on-white text (the highest contrast);
- a saturated colour chart and scikit-image's colour wheel (saturated hues on black);
- bright photographs (over-exposed colour and grey photos, a near-white texture like snow, a bright
  page of text) and dark ones (under-exposed colour and grey photos, a night-like moon surface), from
  images that ship with scikit-image; the grey ones are not in the embedded training set.

Every image is an LR input (uint8 RGB); ``flat_level`` gives the exact colour a flat image must come back as.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgesr.data.imresize import imresize

__all__ = ["FLAT_COLOURS", "FLAT_GREYS", "StressImage", "stress_images"]

FLAT_GREYS: tuple[int, ...] = (0, 1, 16, 64, 128, 192, 235, 254, 255)
FLAT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "yellow": (255, 255, 0),
}
_FLAT_SIDE = 40
_TEXT = ("SUPER-RESOLUTION int8 0123456789", "The quick brown fox jumps over", "the lazy dog. (edgesr) [x2] {ok}")


@dataclass(frozen=True)
class StressImage:
    """One stress input: its name, what kind of content it is, the LR image and, for flats, its colour."""

    name: str
    kind: str  # flat, ramp, pattern, chart, bright, dark
    lr: np.ndarray
    flat_level: tuple[int, int, int] | None = None


def _flat(colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (_FLAT_SIDE, _FLAT_SIDE, 3)).copy()


def _rgb(image: np.ndarray) -> np.ndarray:
    """A grey image repeated into three channels, or an RGB(A) image without its alpha."""
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _ramps() -> dict[str, np.ndarray]:
    levels = np.arange(256, dtype=np.uint8)
    grey = np.broadcast_to(levels[None, :, None], (24, 256, 3))
    rows, cols = np.meshgrid(np.linspace(0, 255, 64), np.linspace(0, 255, 96), indexing="ij")
    colour = np.stack([rows, cols, np.full_like(rows, 128.0)], axis=2)
    return {"ramp_grey": np.ascontiguousarray(grey), "ramp_colour": np.rint(colour).astype(np.uint8)}


def _checkerboard(period: int, side: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    return _rgb((((yy // period) + (xx // period)) % 2 * 255).astype(np.uint8))


def _text() -> np.ndarray:
    font = ImageFont.load_default(size=11)
    canvas = Image.new("RGB", (200, 48), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for line, text in enumerate(_TEXT):
        draw.text((3, 2 + 15 * line), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas).copy()


def _colour_chart() -> np.ndarray:
    """8 hues at full saturation, each at value 255 and 128, plus white, black and two greys (12-px cells)."""
    hues = np.linspace(0.0, 1.0, 8, endpoint=False)
    cells = []
    for value in (1.0, 0.5):
        sector, fraction = np.floor(hues * 6).astype(int), hues * 6 - np.floor(hues * 6)
        rising, falling = fraction, 1 - fraction
        one, zero = np.ones_like(hues), np.zeros_like(hues)
        table = [(one, rising, zero), (falling, one, zero), (zero, one, rising),
                 (zero, falling, one), (rising, zero, one), (one, zero, falling)]  # fmt: skip
        rgb = np.array([[table[s][c][i] for c in range(3)] for i, s in enumerate(sector)]) * value
        cells.append(rgb)
    cells.append(np.array([[1, 1, 1], [0, 0, 0], [0.75, 0.75, 0.75], [0.25, 0.25, 0.25]] * 2, dtype=float))
    chart = np.rint(np.stack(cells) * 255).astype(np.uint8)  # (3, 8, 3)
    return np.repeat(np.repeat(chart, 12, axis=0), 12, axis=1)


def _photo(load: Callable[[], np.ndarray], factor: float, gain: float, offset: float = 0.0) -> np.ndarray:
    """A scikit-image photo downscaled by ``factor`` (MATLAB bicubic), then ``gain`` x + ``offset``, clipped."""
    image = imresize(_rgb(load()), 1 / factor)
    return np.clip(np.rint(image.astype(np.float64) * gain + offset), 0, 255).astype(np.uint8)


def _photos() -> dict[str, tuple[str, np.ndarray]]:
    from skimage import data

    return {
        # a colour photo over-exposed by about two thirds of a stop: its highlights clip at 255
        "bright_coffee": ("bright", _photo(data.coffee, 4, 1.6)),
        # a grey photo over-exposed by about half a stop (its bright half clips at 255)
        "bright_clock": ("bright", _photo(data.clock, 3, 1.45)),
        # a near-white texture (snow, paper, sky): brick squeezed into the top 40 levels, some at 255
        "bright_snow": ("bright", _photo(data.brick, 4, 0.25, 215)),
        "bright_page": ("bright", _photo(data.page, 2, 1.3)),
        # under-exposed: most values below 40, the low end where a signed range wastes half its levels
        "dark_astronaut": ("dark", _photo(data.astronaut, 4, 0.15)),
        "dark_camera": ("dark", _photo(data.camera, 4, 0.15)),
        "dark_moon": ("dark", _photo(data.moon, 4, 0.3)),
    }


def stress_images() -> list[StressImage]:
    """The whole suite, in a fixed order (flats first)."""
    from skimage import data

    images = [StressImage(f"flat_grey_{g:03d}", "flat", _flat((g, g, g)), (g, g, g)) for g in FLAT_GREYS]
    images += [StressImage(f"flat_{name}", "flat", _flat(c), c) for name, c in FLAT_COLOURS.items()]
    images += [StressImage(name, "ramp", image) for name, image in _ramps().items()]
    images += [
        StressImage("checkerboard_1px", "pattern", _checkerboard(1)),
        StressImage("checkerboard_4px", "pattern", _checkerboard(4)),
        StressImage("text_black_on_white", "pattern", _text()),
        StressImage("colour_chart", "chart", _colour_chart()),
        StressImage("colour_wheel", "chart", _photo(data.colorwheel, 4, 1.0)),
    ]
    images += [StressImage(name, kind, image) for name, (kind, image) in _photos().items()]
    return images
