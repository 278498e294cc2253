"""The evaluate table's plain-words flags on a small hand-made table."""

from __future__ import annotations

import pytest

from edgesr.comparison import row_flags

SETS = ["Set5", "Set14"]
REFERENCES = {2: "bicubic", 3: "bicubic_x3"}


def _row(model: str, scale: int, set5: float, set14: float) -> dict[str, object]:
    return {"model": model, "scale": scale, "psnr_Set5": set5, "psnr_Set14": set14}


TABLE = [
    _row("bicubic", 2, 33.66, 30.24),
    _row("fsrcnn", 2, 33.62, 30.26),  # below bicubic on Set5 and within 0.05 dB of it on both sets
    _row("espcn", 2, 33.40, 30.10),  # below bicubic on both sets
    _row("xlsr", 2, 36.00, 31.50),
    _row("xlsr_linear", 2, 36.03, 31.46),  # within 0.05 dB of xlsr on both sets
    _row("sam_sr_xlite", 2, 36.04, 31.60),  # within 0.05 dB of xlsr on Set5 only: a real difference
    _row("bicubic_x3", 3, 30.39, 27.55),
    _row("fgnas_S_x3", 3, 30.41, 27.56),  # within seed noise of its own scale's bicubic
    _row("fgnas_M_x3", 3, 33.50, 30.30),  # close to x2 rows, which are not compared with x3 ones
]


def test_flags_of_a_hand_made_table() -> None:
    assert row_flags(TABLE, SETS, REFERENCES, 0.05) == {
        "bicubic": "",
        "fsrcnn": "below bicubic on Set5; within seed noise of bicubic",
        "espcn": "below bicubic on Set5, Set14",
        "xlsr": "within seed noise of xlsr_linear",
        "xlsr_linear": "within seed noise of xlsr",
        "sam_sr_xlite": "",
        "bicubic_x3": "",
        "fgnas_S_x3": "within seed noise of bicubic_x3",
        "fgnas_M_x3": "",
    }


def test_a_wider_band_names_every_close_row_in_table_order() -> None:
    flags = row_flags(TABLE, SETS, REFERENCES, seed_noise_db=0.2)
    assert flags["xlsr"] == "within seed noise of xlsr_linear, sam_sr_xlite"
    assert flags["espcn"] == "below bicubic on Set5, Set14"


def test_a_difference_equal_to_the_band_is_within_it() -> None:
    rows = [_row("bicubic", 2, 30.0, 28.0), _row("a", 2, 31.0, 29.0), _row("b", 2, 31.25, 29.25)]
    assert row_flags(rows, SETS, {2: "bicubic"}, seed_noise_db=0.25)["a"] == "within seed noise of b"
    assert row_flags(rows, SETS, {2: "bicubic"}, seed_noise_db=0.125)["a"] == ""


def test_a_negative_band_is_refused() -> None:
    with pytest.raises(ValueError, match="seed_noise_db must be >= 0 dB"):
        row_flags(TABLE, SETS, REFERENCES, seed_noise_db=-0.05)
