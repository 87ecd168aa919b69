"""The config schema: the reference's 442 files validate; every refusal names its key."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from src.config import (ExperimentConfig, apply_override, experiment_schema, load_config, pretrained_key, read_yaml,
                        run_id, validate_config)
from src.errors import ConfigError
from tests.conftest import QUICKSTART, REPO, UPSTREAM_CONFIGS

UPSTREAM_FILES = sorted(UPSTREAM_CONFIGS.rglob("*.yaml"))


def test_the_corpus_is_there():
    assert len(UPSTREAM_FILES) == 442


def test_every_reference_config_validates():
    for path in UPSTREAM_FILES:
        config = load_config(path)
        assert isinstance(config, ExperimentConfig)
        # Defaults that keep the reference's meaning: no compat switch is on by itself.
        assert config.compat.reuse_noise is False and config.compat.renyi_conversion == "correct"
        assert config.wandb.mode == "disabled"


def test_reference_values_survive_validation():
    config = load_config(UPSTREAM_CONFIGS / "budget_curve_runs/cc-cifar/365ah7bj_config.yaml")
    cc = config.unlearning.contractive_coefficients
    assert (cc.model_clip, cc.sigma, cc.grad_clip, cc.noise_addition_after_projection) == (0.975, 0.5, False, True)
    assert config.training.pretrained == "logs/iep18hnq/ckpt"
    assert config.unlearning.delta == 1e-5 and config.dataset.seed == 230
    # A missing retrain section means both flags false (D13).
    retrain = load_config(next(UPSTREAM_CONFIGS.glob("budget_curve_runs/retrain-mnist/*.yaml")))
    assert retrain.unlearning.retrain.start_from_all_zeros is False
    assert retrain.unlearning.retrain.clip_and_noise is False
    # The hyphenated key is kept as the reference spells it.
    baseline = load_config(next(UPSTREAM_CONFIGS.glob("budget_curve_runs/dp-baseline-mnist/*.yaml")))
    assert baseline.to_dict()["unlearning"]["dp-baseline"]["epsilon_target"] == 1


def quickstart() -> dict:
    return read_yaml(QUICKSTART)


def refusal(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return str(info.value)


def edited(**changes) -> dict:
    data = copy.deepcopy(quickstart())
    for dotted, value in changes.items():
        apply_override(data, f"{dotted.replace('__', '.')}={yaml.safe_dump(value, default_flow_style=True).strip()}")
    return data


@pytest.mark.parametrize("key, value, expected", [
    ("unlearning.iteration.epsilon_target", -1, "greater than 0"),
    ("unlearning.delta", 1.5, "less than 1"),
    ("unlearning.delta", 0, "greater than 0"),
    ("dataset.val_split", 1.2, "less than 1"),
    ("dataset.forget_split", 0, "greater than 0"),
    ("dataset.name", "mnistt", "'mnist', 'mnist_5k'"),
    ("model.name", "resnet18", "'tiny_net'"),
    ("unlearning.algorithm", "sisa", "'iteration'"),
    ("training.optim", "LBFGS", "'SGD', 'RMSprop' or 'Adam'"),
    ("post_unlearning.lr_schedule", "linear", "'constant', 'cos' or 'onecycle'"),
    ("dataset.batch_size", "many", "valid integer"),
    ("training.pretrained", True, "expected false (train now), 'auto'"),
    ("unlearning.epochs", 0, "greater than 0"),
    ("wandb.mode", "cloud", "'disabled', 'offline' or 'online'"),
    ("compat.renyi_conversion", "alpha", "'correct' or 'upstream'"),
    ("device", "tpu", "auto, cpu, cuda"),
])
def test_refusals_name_key_value_and_what_is_allowed(key, value, expected):
    message = refusal(edited(**{key.replace(".", "__"): value}))
    line = next(line for line in message.splitlines() if line.strip().startswith(key + ":"))
    assert repr(value) in line and expected in line


def test_unknown_key_is_refused_with_a_suggestion():
    data = quickstart()
    data["unlearning"]["iteration"]["grad_clp"] = 3
    data["global_sead"] = 1
    message = refusal(data)
    assert "unlearning.iteration.grad_clp: unknown key (value 3); did you mean 'grad_clip'?" in message
    assert "global_sead: unknown key" in message and "did you mean 'global_seed'" in message


def test_missing_required_key():
    data = quickstart()
    del data["unlearning"]["delta"]
    assert "unlearning.delta: required key is missing" in refusal(data)


def test_exactly_one_pabi_target():
    data = quickstart()
    data["unlearning"]["iteration"]["epsilon_renyi_target"] = 1
    assert "exactly one of epsilon_renyi_target" in refusal(data)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(QUICKSTART.read_text() + "\nglobal_seed: 7\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'global_seed' at line \d+ \(first given at line \d+\)"):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_parse_yaml_values():
    config = load_config(QUICKSTART, ["unlearning.epochs=3", "dataset.input_shape=[28, 28, 1]",
                                      "unlearning.delta=1e-6", "compat.reuse_noise=true"])
    assert config.unlearning.epochs == 3 and config.unlearning.delta == 1e-6 and config.compat.reuse_noise
    with pytest.raises(ConfigError, match="must look like dotted.key=value"):
        load_config(QUICKSTART, ["unlearning.epochs"])
    with pytest.raises(ConfigError, match="'global_seed' is a value, not a section"):
        load_config(QUICKSTART, ["global_seed.x=1"])


def test_run_id_comes_from_the_resolved_config():
    a = load_config(QUICKSTART)
    assert run_id(a) == run_id(load_config(QUICKSTART))
    assert run_id(a).startswith("quickstart-")
    assert run_id(load_config(QUICKSTART, ["global_seed=2"])) != run_id(a)
    # Where results are written or observed is not part of the identity.
    assert run_id(load_config(QUICKSTART, ["logs_dir=elsewhere", "wandb.mode=offline", "device=cpu"])) == run_id(a)


def test_pretrained_key_holds_everything_that_determines_the_model():
    a = load_config(QUICKSTART)
    same_model = load_config(QUICKSTART, ["unlearning.epochs=3", "unlearning.iteration.grad_clip=100",
                                          "dataset.forget_split=0.2"])
    assert pretrained_key(same_model) == pretrained_key(a)
    for change in ("dataset.seed=8", "global_seed=3", "training.epochs=31", "training.max_lr=0.05",
                   "dataset.val_split=0.2", "model.name=tinier_net"):
        assert pretrained_key(load_config(QUICKSTART, [change])) != pretrained_key(a), change


def test_config_module_does_not_import_torch():
    # The launcher and --help read configs; torch costs seconds to import.
    code = "import sys, src.config; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_each_method_section_comes_from_its_own_file():
    from src.registry import UNLEARNING_ALGORITHMS

    schema = experiment_schema().model_fields["unlearning"].annotation
    for name, cls in UNLEARNING_ALGORITHMS.builtins().items():
        if cls.section is None:
            continue
        field = schema.model_fields[name.replace("-", "_")]
        assert field.alias == name and cls.section in field.annotation.__args__
        assert cls.section.__module__ == cls.__module__  # declared beside the method's code
    # An unknown algorithm is refused with the registered names.
    message = refusal(edited(unlearning__algorithm="nope"))
    assert "unlearning.algorithm" in message and "'iteration'" in message and "'retrain'" in message


def test_sections_a_config_does_not_give_are_not_part_of_its_identity():
    # Otherwise registering a new method would change every existing run id.
    data = validate_config(quickstart()).to_dict()
    assert set(data["unlearning"]) & {"contractive_coefficients", "dp-baseline"} == set()
    assert data["unlearning"]["iteration"]["epsilon_target"] == 1
    assert data["unlearning"]["retrain"] == {"start_from_all_zeros": False, "clip_and_noise": False}
