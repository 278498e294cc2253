"""params.yaml validation: wrong keys and values fail with messages that name key, value and what is allowed."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgesr.config import ConfigError, load_params, params_hash, write_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_committed_params_and_profiles_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.scale == 2
    assert "bicubic" not in params.models
    smoke = load_params(ROOT / "params.yaml", "smoke")
    assert smoke.train.iterations < params.train.iterations
    # the profile only overrides what it names; the rest comes from params.yaml
    assert smoke.models == params.models
    assert smoke.train.lr == params.train.lr


def test_the_schema_loads_without_torch():
    check = "import sys, edgesr.settings; assert 'torch' not in sys.modules, 'edgesr.settings imported torch'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unknown_key_names_the_key_and_the_allowed_ones(tmp_path):
    path = _write(tmp_path, lambda d: d["train"].update(iteratons=5))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert "unknown key 'train.iteratons'" in message
    assert "iterations" in message.split("allowed keys here:")[1]


def test_bad_value_names_key_value_and_allowed_values(tmp_path):
    path = _write(tmp_path, lambda d: d["train"]["loss"].update(type="l2"))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert "train.loss" in message and "'l2'" in message
    assert "'l1'" in message and "'charbonnier'" in message


def test_out_of_range_value(tmp_path):
    path = _write(tmp_path, lambda d: d["train"].update(iterations=0))
    with pytest.raises(ConfigError, match=r"train.iterations = 0: Input should be greater than or equal to 1"):
        load_params(path)


def test_scale_must_be_2_3_or_4(tmp_path):
    path = _write(tmp_path, lambda d: d.update(scale=5))
    with pytest.raises(ConfigError, match=r"scale = 5: Input should be 2, 3 or 4"):
        load_params(path)


def test_unknown_model_type_lists_the_zoo(tmp_path):
    path = _write(tmp_path, lambda d: d["models"].update(mine={"arch": {"type": "srgan"}}))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert "models.mine.arch" in str(err.value) and "'srgan'" in str(err.value) and "'xlsr'" in str(err.value)


def test_bicubic_is_not_a_training_entry(tmp_path):
    path = _write(tmp_path, lambda d: d["models"].update(bic={"arch": {"type": "bicubic"}}))
    with pytest.raises(ConfigError, match="evaluate always adds the bicubic reference row"):
        load_params(path)


def test_missing_file_and_unknown_profile_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown profile 'turbo'; profiles in .*profiles: .*smoke"):
        load_params(ROOT / "params.yaml", "turbo")


def test_write_params_round_trips_and_hash_is_stable(tmp_path):
    params = load_params(ROOT / "params.yaml", "smoke")
    written = write_params(params, tmp_path / "params.yaml")
    again = load_params(written)
    assert again == params
    assert params_hash(again.train) == params_hash(params.train)
    assert params_hash(again.train) != params_hash(load_params(ROOT / "params.yaml").train)


def test_model_train_overrides_merge_over_train_and_are_validated(tmp_path):
    override = {"loss": {"type": "charbonnier", "eps": 0.1}, "scheduler": {"type": "cosine", "eta_min": 1e-6}}
    path = _write(tmp_path, lambda d: d["models"]["xlsr"].update(train=override))
    params = load_params(path)
    xlsr, espcn = params.train_config("xlsr"), params.train_config("espcn")
    assert espcn == params.train and params.train.scheduler.type == "cyclic"
    assert xlsr.loss.type == "charbonnier" and xlsr.loss.eps == 0.1
    # a changed `type` replaces the section: no cyclic keys leak into the cosine schedule
    assert xlsr.scheduler.model_dump() == {"type": "cosine", "eta_min": 1e-6}
    assert xlsr.iterations == espcn.iterations and xlsr.lr == espcn.lr  # the rest is shared

    path = _write(tmp_path, lambda d: d["models"]["espcn"].update(train={"loss": {"type": "l3"}}))
    with pytest.raises(ConfigError, match=r"models: models.espcn.train.loss.type = 'l3': Input should be 'l1'"):
        load_params(path)


def test_keys_inside_tagged_sections_read_as_in_the_file(tmp_path):
    # pydantic's union tag (`...arch.sam_sr.num_block`) is not a key of the file and is not shown
    path = _write(tmp_path, lambda d: d["models"].update(sam_sr_xlite={"arch": {"type": "sam_sr", "num_block": 4}}))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert "unknown key 'models.sam_sr_xlite.arch.num_block'; allowed keys here:" in message
    assert "num_blocks" in message.split("allowed keys here:")[1]

    path = _write(tmp_path, lambda d: d["train"]["scheduler"].update(warmup=3))
    with pytest.raises(ConfigError, match=r"unknown key 'train.scheduler.warmup'; allowed keys here: .*up_fraction"):
        load_params(path)


def _retrain_at(d, scales):
    d["search"]["retrain"].update(scales=scales)


def test_stages_must_fit_together(tmp_path):
    def at_x3(d):  # the deployed subnets are the x2 ones: deploy a zoo model at x3
        d.update(scale=3)
        d["deploy"].update(models=["xlsr"], default_model="xlsr")
        d["quantize"].update(ignored_layers={})

    assert load_params(_write(tmp_path, at_x3)).scale == 3
    with pytest.raises(ConfigError, match=r"\n  - scale 3 is trained and evaluated but prepare.scales \[2\] does not"):
        load_params(_write(tmp_path, lambda d: (d.update(scale=3), d["prepare"].update(scales=[2]))))
    # x4 with 32-pixel LR patches needs HR images of at least 128 pixels
    with pytest.raises(ConfigError, match=r"prepare.min_hr_size 96 is below the HR patch of '\w+' .* = 128"):
        load_params(_write(tmp_path, lambda d: (d.update(scale=4), d["prepare"].update(min_hr_size=96))))
    # the same for the x4 retraining of the searched subnets
    with pytest.raises(ConfigError, match=r"min_hr_size 96 is below the HR patch of the retraining .* = 128"):
        load_params(_write(tmp_path, lambda d: (d["prepare"].update(min_hr_size=96), _retrain_at(d, [2, 4]))))


def test_profiles_are_looked_up_beside_the_params_file(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny.yaml").write_text("train: {iterations: 3}\n")
    path = _write(tmp_path, lambda d: None)
    assert load_params(path, "tiny").train.iterations == 3
    with pytest.raises(ConfigError, match=r"unknown profile 'smoke'; profiles in .*: tiny"):
        load_params(path, "smoke")


def test_search_section_errors_name_the_key(tmp_path):
    path = _write(tmp_path, lambda d: d["search"]["sizes"]["S"].update(supernet={"widht": 16}))
    with pytest.raises(ConfigError, match=r"search.sizes.S.supernet: widht: Extra inputs are not permitted"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["search"]["sizes"]["S"].update(budget={"type": "flops", "target_g": 1}))
    with pytest.raises(
        ConfigError, match=r"search.sizes.S.budget: Input tag 'flops'.*'none', 'lambda', 'mult_adds', 'latency'"
    ):
        load_params(path)
    path = _write(tmp_path, lambda d: (d["prepare"].update(scales=[2, 3]), _retrain_at(d, [2, 4])))
    with pytest.raises(ConfigError, match=r"retrains at x\[4\] but prepare.scales \[2, 3\] does not make them"):
        load_params(path)


def test_a_profile_removes_a_section_with_null(tmp_path):
    params = load_params(ROOT / "params.yaml", ROOT / "profiles" / "cpu-long.yaml")
    assert list(params.search.sizes) == ["S", "RT"] and "espcn" not in params.models
    assert params.search.supernet_for("S").width == 48 and params.search.budget_for("S").target_g == 45.0
    # `edgesr config --profile cpu-long --write params.yaml` run twice: the second merge changes nothing
    merged = write_params(params, tmp_path / "params.yaml")
    assert load_params(merged, ROOT / "profiles" / "cpu-long.yaml") == params


def test_deploy_names_only_trained_models_and_a_deployed_default(tmp_path):
    path = _write(tmp_path, lambda d: d["deploy"].update(models=["xlsr", "edsr"], default_model="xlsr"))
    with pytest.raises(ConfigError, match=r"deploy.models names edsr, which no stage trains; pick from .*xlsr"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["deploy"].update(default_model="espcn", models=["xlsr"]))
    with pytest.raises(ConfigError, match=r"deploy.default_model 'espcn' is not exported: add it to deploy.models"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["quantize"].update(ignored_layers={"edsr": ["conv_last"]}))
    with pytest.raises(ConfigError, match=r"quantize.ignored_layers has 'edsr', which is not in deploy.models"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["schedule"].update(cron="0 3 * *"))
    with pytest.raises(ConfigError, match=r"schedule.cron '0 3 \* \*' is not a five-field cron expression"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["quantize"].update(runtimes=["tflite"]))
    with pytest.raises(
        ConfigError, match=r"quantize.runtimes.0 = 'tflite': Input should be 'openvino' or 'onnxruntime'"
    ):
        load_params(path)


def test_int8_limits_calibration_shares_and_border_are_checked(tmp_path):
    path = _write(tmp_path, lambda d: d["quantize"]["limits"].update(flat_mean_level=2))
    with pytest.raises(ConfigError, match=r"unknown key 'quantize.limits.flat_mean_level'"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["quantize"].update(exposed_fraction=0.6, synthetic_fraction=0.5))
    with pytest.raises(ConfigError, match=r"exposed_fraction 0.6 \+ synthetic_fraction 0.5 is more than 1"):
        load_params(path)
    path = _write(tmp_path, lambda d: d["deploy"].update(border="zero"))
    with pytest.raises(ConfigError, match=r"deploy.border = 'zero': Input should be 'symmetric' or 'edge'"):
        load_params(path)
    params = load_params(ROOT / "params.yaml")
    assert params.quantize.limits.set_drop_db == 0.3 and params.deploy.border == "symmetric"


def test_map_widths_of_the_supernet_and_its_architecture():
    from edgesr.architectures import FGNASArchitecture
    from edgesr.search.settings import SupernetConfig

    widths = {None: (16, 16), 80: (80, 80), 8: (8, 16)}  # mult_width -> (Mult map, widest 3x3 output)
    for mult_width, expected in widths.items():
        supernet = SupernetConfig(num_blocks=1, width=16, mult_width=mult_width)
        arch = FGNASArchitecture(
            width=16, mult_width=mult_width, activations=["relu"], head=[0], blocks=[], after_body=[0]
        )
        assert (supernet.mult_map_width, supernet.widest_map) == expected
        assert (arch.mult_map_width, arch.widest_map) == expected
    # the shared MapWidths mixin adds no pydantic field: each model keeps its declared order in params dumps
    assert list(SupernetConfig.model_fields)[:3] == ["num_blocks", "width", "mult_width"]
    assert list(FGNASArchitecture.model_fields)[:2] == ["width", "mult_width"]
