"""The `edgesr` command line: JSON outputs, effective config, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgesr.artifacts import Int8NotDeployableError
from edgesr.cli import main
from edgesr.complexity import count_complexity
from edgesr.config import ConfigError
from edgesr.data.images import UnreadableImageError
from edgesr.data.sources import EmptySourceError
from edgesr.errors import UserError
from edgesr.models import MODEL_NAMES, build_model, default_model_config
from edgesr.stages.quantize import DefaultModelNotDeployableError

from .conftest import benchmark_set

ROOT = Path(__file__).resolve().parents[1]


def test_bicubic_json_reproduces_set5_x2(capsys):
    assert main(["bicubic", "--hr", str(benchmark_set("Set5")), "--scale", "2", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["images"] == 5
    assert scores["psnr"] == pytest.approx(33.66, abs=0.03)
    assert scores["ssim"] == pytest.approx(0.9299, abs=0.002)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_complexity_json_for_every_zoo_model(name, capsys, tmp_path):
    assert main(["complexity", name, "--scale", "4", "--json", "--params", str(tmp_path / "none.yaml")]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = count_complexity(build_model(default_model_config(name), 4), 4, (720, 1280))
    assert printed == {"params": expected.params, "mult_adds": expected.mult_adds, "other_ops": expected.other_ops}


def test_config_prints_the_merged_profile(capsys):
    assert main(["config", "--params", str(ROOT / "params.yaml"), "--profile", "smoke"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["iterations"] == 12
    assert shown["train"]["lr"] == yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["lr"]


def test_config_model_prints_the_merged_training_settings(capsys):
    assert main(["config", "--params", str(ROOT / "params.yaml"), "--model", "xlsr"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["arch"]["type"] == "xlsr"
    assert shown["train"]["scheduler"]["max_lr"] == 1.0e-3  # xlsr's override
    assert shown["train"]["iterations"] == yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["iterations"]


def test_user_errors_are_one_line_with_status_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("iterations: 1200", "iterations: -3"))
    result = subprocess.run(
        [sys.executable, "-m", "edgesr.cli", "config", "--params", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "train.iterations = -3" in result.stderr and "Traceback" not in result.stderr

    result = subprocess.run(
        [sys.executable, "-m", "edgesr.cli", "bicubic", "--hr", str(tmp_path / "missing"), "--scale", "2"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert str(tmp_path / "missing") in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "--model", "nope"], "error: no model 'nope' in `models`"),
        (["upscale", "{tmp}/missing.png"], "error: {tmp}/missing.png does not exist"),
        (["bicubic", "--hr", "{tmp}", "--scale", "2"], "error: image source {tmp} holds no image files"),
    ],
)
def test_user_errors_print_one_line(tmp_path, capsys, argv, message):
    params = ["--params", str(ROOT / "params.yaml")] if argv[0] != "bicubic" else []
    assert main([a.format(tmp=tmp_path) for a in argv] + params) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_internal_errors_keep_their_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("edgesr.complexity.count_complexity", broken)
    with pytest.raises(ValueError, match="a bug, not a user error"):
        main(["complexity", "fsrcnn", "--scale", "2"])


@pytest.mark.parametrize(
    "error",
    [ConfigError, EmptySourceError, UnreadableImageError, Int8NotDeployableError, DefaultModelNotDeployableError],
)
def test_user_facing_errors_are_user_errors(error):
    assert issubclass(error, UserError) and issubclass(error, ValueError)


def test_complexity_counts_the_projects_configuration_of_a_zoo_name(capsys, tmp_path):
    params = tmp_path / "params.yaml"
    assert main(["config", "--params", str(ROOT / "params.yaml"), "--profile", "cpu-long", "--write", str(params)]) == 0
    capsys.readouterr()
    assert main(["complexity", "plain_resnet", "--scale", "2", "--params", str(params)]) == 0
    # cpu-long's baseline is 8 blocks x 36 (44.1 G), not the zoo default 8 x 32 (35.0 G)
    assert "plain_resnet x2 (`models.plain_resnet` of" in capsys.readouterr().out
    main(["complexity", "plain_resnet", "--scale", "2", "--params", str(params), "--json"])
    assert json.loads(capsys.readouterr().out)["mult_adds"] == 44_117_913_600


def test_complexity_unknown_model_lists_the_zoo(capsys):
    assert main(["complexity", "srgan", "--scale", "2", "--params", str(ROOT / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'srgan'" in err and "xlsr" in err
