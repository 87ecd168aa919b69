"""Non-finite numbers and numbers whose certificate overflows are refused, naming the key."""

from __future__ import annotations

import copy
import typing

import pytest
import yaml

from src.config import apply_override, experiment_schema, load_config, read_yaml, validate_config
from src.errors import ConfigError
from src.runner import make_plan
from tests.conftest import QUICKSTART, run_main

# Every method's section present (valid), so that each float key of the schema is validated.
ALL_SECTIONS = {
    "unlearning.contractive_coefficients": {"epsilon_target": 1, "sigma": 0.5, "model_clip": 0.5, "grad_clip": 1.0,
                                            "noise_addition_before_projection": True},
    "unlearning.dp-baseline": {"epsilon_target": 1},
    "training.dp_sgd": {"l2_norm_clip": 0.5, "target_epsilon": 50, "target_delta": 1e-5},
    "post_unlearning.post_unlearn_clip": 1.0,
    "training.langevin": {"sigma": 0.1},
}


def full_config() -> dict:
    data = read_yaml(QUICKSTART)
    for dotted, value in ALL_SECTIONS.items():
        apply_override(data, f"{dotted}={yaml.safe_dump(value, default_flow_style=True).strip()}")
    return data


def _mentions_float(annotation) -> bool:
    if annotation is float:
        return True
    return any(_mentions_float(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _section(annotation):
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None


def float_keys(model=None, prefix=""):
    model = model or experiment_schema()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        section = _section(field.annotation)
        if section is not None:
            yield from float_keys(section, key + ".")
        elif _mentions_float(field.annotation):
            yield key


FLOAT_KEYS = sorted(set(float_keys()))
# Keys holding a list of numbers (e.g. [0.1, 0.01]): the non-finite number goes inside.
SEQUENCE_KEYS = {key for key in FLOAT_KEYS if key.split(".")[-1] in ("fpr", "alpha_range")}


def test_the_walk_finds_the_float_keys_of_core_and_methods():
    expected = {"unlearning.max_lr", "unlearning.init_model_clip", "unlearning.delta", "training.dp_sgd.l2_norm_clip",
                "unlearning.iteration.grad_clip", "unlearning.iteration.epsilon_target",
                "unlearning.contractive_coefficients.sigma", "unlearning.contractive_coefficients.grad_clip",
                "unlearning.dp-baseline.epsilon_target", "post_unlearning.post_unlearn_clip", "dataset.val_split"}
    assert expected <= set(FLOAT_KEYS)
    validate_config(full_config())  # the base config is valid


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_float_key_refuses_non_finite_numbers(key, value):
    data = copy.deepcopy(full_config())
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = [1e-3, value] if key in SEQUENCE_KEYS else value
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    line = next(line for line in str(info.value).splitlines() if line.strip().startswith(key))
    assert "finite" in line or "greater than" in line or "less than" in line


GC = ["unlearning.algorithm=iteration"]
CC = ["unlearning.algorithm=contractive_coefficients", "unlearning.init_model_clip=7",
      "unlearning.contractive_coefficients.epsilon_target=1", "unlearning.contractive_coefficients.sigma=0.01",
      "unlearning.contractive_coefficients.model_clip=0.01",
      "unlearning.contractive_coefficients.noise_addition_after_projection=true"]
OP = ["unlearning.algorithm=dp-baseline", "unlearning.dp-baseline.epsilon_target=1"]
RETRAIN = ["unlearning.algorithm=retrain", "unlearning.retrain.clip_and_noise=true"]
DPSGD = ["unlearning.algorithm=dp-sgd", "training.dp_sgd.l2_norm_clip=0.5", "training.dp_sgd.target_epsilon=50",
         "training.dp_sgd.target_delta=1e-5", "compat.group_privacy=tight"]


@pytest.mark.parametrize("base, key, value", [
    (GC, "unlearning.init_model_clip", 1e308),
    (GC, "unlearning.iteration.grad_clip", 1e308),
    (GC, "unlearning.iteration.epsilon_target", 1e308),
    (GC + ["unlearning.weight_decay=0"], "unlearning.max_lr", 1e308),
    (GC + ["unlearning.iteration.epsilon_target=null", "unlearning.iteration.epsilon_renyi_target=1e-300"],
     "unlearning.iteration.epsilon_renyi_target", 1e-300),
    (CC, "unlearning.contractive_coefficients.sigma", 1e308),
    (CC, "unlearning.contractive_coefficients.epsilon_target", 1e308),
    (CC, "unlearning.init_sigma", 1e39),
    (OP, "unlearning.init_model_clip", 1e308),
    (RETRAIN, "unlearning.init_sigma", 1e300),
    (DPSGD, "training.dp_sgd.l2_norm_clip", 1e308),
    (DPSGD, "training.dp_sgd.target_epsilon", 1e308),
])
def test_a_certificate_that_overflows_is_refused_naming_the_key(base, key, value):
    with pytest.raises(ConfigError) as info:
        make_plan(load_config(QUICKSTART, base + [f"{key}={value!r}"]))
    assert str(info.value).startswith(f"{key}: {value!r}")


def test_dry_run_refuses_an_infinite_dp_sgd_clip_without_a_traceback(capsys):
    # the reference's l2_norm_clip: .inf gave a "valid" certificate in a dry run
    code = run_main("--config", QUICKSTART, "--dry-run", *[f"--override={o}" for o in DPSGD],
                    "--override=training.dp_sgd.l2_norm_clip=.inf")
    err = capsys.readouterr().err
    assert code == 2 and "training.dp_sgd.l2_norm_clip: got inf" in err and "Traceback" not in err
