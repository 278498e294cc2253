"""Plain-words flags for the evaluate table: what a reader should know before ranking two rows.

Two comparisons of mean PSNR-Y, each between rows of the same scale:

- ``below bicubic on Set5, Set14``: the model scores below the bicubic reference row on those sets,
  so it does worse than no learning at all there;
- ``within seed noise of fgnas_M_x2``: on every set the two rows differ by no more than the spread
  that retraining with another seed causes, so the table cannot say which one is better.

Rows are the evaluate stage's dicts: ``model``, ``scale`` and ``psnr_<set>`` for every set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["row_flags"]


def row_flags(
    rows: Sequence[Mapping[str, Any]],
    sets: Sequence[str],
    references: Mapping[int, str],
    seed_noise_db: float,
) -> dict[str, str]:
    """Model name -> its flags joined by ``"; "`` (``""`` when none) for every row of ``rows``.

    ``references`` maps a scale to the name of its reference row (bicubic); reference rows get no
    flag. A difference of exactly ``seed_noise_db`` counts as within the noise.
    """
    if seed_noise_db < 0:
        raise ValueError(f"seed_noise_db must be >= 0 dB (a PSNR-Y spread), got {seed_noise_db}")
    by_name = {row["model"]: row for row in rows}
    flags: dict[str, str] = {}
    for row in rows:
        name, scale = row["model"], row["scale"]
        if name in references.values():
            flags[name] = ""
            continue
        reference = by_name[references[scale]]
        below = [s for s in sets if row[f"psnr_{s}"] < reference[f"psnr_{s}"]]
        close = [
            other["model"]
            for other in rows
            if other["model"] != name
            and other["scale"] == scale
            and all(abs(row[f"psnr_{s}"] - other[f"psnr_{s}"]) <= seed_noise_db for s in sets)
        ]
        words = [f"below {reference['model']} on {', '.join(below)}"] if below else []
        words += [f"within seed noise of {', '.join(close)}"] if close else []
        flags[name] = "; ".join(words)
    return flags
