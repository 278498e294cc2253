"""Data: MATLAB-bicubic LR/HR pairs (BasicSR conventions), image I/O, sources, and the prepared dataset."""

from edgesr.data.bicubic_baseline import bicubic_scores, bicubic_upscale
from edgesr.data.images import IMAGE_EXTENSIONS, UnreadableImageError, load_rgb8, save_png
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.prepare import available_benchmarks, load_pairs, prepare, read_manifest
from edgesr.data.settings import PrepareConfig
from edgesr.data.sources import EMBEDDED_NAMES, EmptySourceError, embedded_images, folder_images

__all__ = [
    "EMBEDDED_NAMES",
    "IMAGE_EXTENSIONS",
    "EmptySourceError",
    "PrepareConfig",
    "UnreadableImageError",
    "available_benchmarks",
    "bicubic_scores",
    "bicubic_upscale",
    "embedded_images",
    "folder_images",
    "imresize",
    "load_pairs",
    "load_rgb8",
    "modcrop",
    "prepare",
    "read_manifest",
    "save_png",
]
