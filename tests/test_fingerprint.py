"""The `sources` stage's fingerprint: it changes exactly when the configured image folders change."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
from PIL import Image

from edgesr.config import load_params
from edgesr.data.fingerprint import folders_fingerprint
from edgesr.stages import sources
from tests.test_dvc_deps import ROOT


def _image(path, value: int) -> None:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_fingerprint_names_every_image_and_a_missing_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder / "a.png", 10)
    (folder / "notes.txt").write_text("not an image")
    found = folders_fingerprint(["embedded", "photos", "absent"], tmp_path)
    assert found["embedded"] == {"scikit-image": version("scikit-image"), "scikit-learn": version("scikit-learn")}
    assert list(found["photos"]) == ["a.png"] and len(found["photos"]["a.png"]) == 64
    assert found["absent"] == "missing"


def test_sources_stage_rewrites_a_fingerprint_only_when_the_images_change(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    _image(folder / "a.png", 10)
    params = load_params(ROOT / "params.yaml", "smoke")
    params = params.model_copy(update={"prepare": params.prepare.model_copy(update={"benchmarks": {"B": "bench"}})})
    prepare_file, photo_file = sources.run(params, tmp_path)
    first, stamp = prepare_file.read_text(), prepare_file.stat().st_mtime_ns
    assert photo_file.read_text() == "{}\n"

    sources.run(params, tmp_path)
    assert prepare_file.stat().st_mtime_ns == stamp  # untouched: DVC sees no change

    _image(folder / "a.png", 11)  # same name, new content
    sources.run(params, tmp_path)
    assert prepare_file.read_text() != first
