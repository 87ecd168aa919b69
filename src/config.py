"""The schema of an experiment file, and loading it strictly.

Every key of the reference's schema is here with its type and range, plus our additions
(the `compat:` switches of docs/differences.md, `wandb.mode`, `device`, `name`,
`logs_dir`, `checkpoints_dir`, `dataset.features_root`). Each unlearning method declares
its own section (`unlearning.iteration:`, `unlearning.dp-baseline:`, ...) beside its code
in src/unlearning/; `experiment_schema` composes them with the core below. Validation
happens before anything is written: unknown keys, wrong types, values out of range and
duplicate YAML keys are refused with the dotted key, the value and what is allowed.
Cross-field rules that belong to one method live in that method's file (`check_config`).
This module does not import torch (the launcher and `--help` read configs cheaply).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model,
                      field_validator)

from src.errors import ConfigError

DATASET_NAMES = ("mnist", "mnist_5k", "cifar10", "cifar10_feature", "cifar100_feature")
MODEL_NAMES = ("two_layer_net", "three_layer_net", "tiny_net", "tinier_net", "tiny_net_cifar", "simplenet")
OPTIMIZER_NAMES = ("SGD", "RMSprop", "Adam")
SCHEDULE_NAMES = ("constant", "cos", "onecycle")

Probability = Field(gt=0, lt=1)


def _false_or_positive(value):
    if value is not False and not value > 0:
        raise ValueError("must be false or a positive number")
    return value


# A clip that is off (`false`) or a positive radius.
OptionalClip = Annotated[Union[Literal[False], float], AfterValidator(_false_or_positive)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DatasetConfig(Section):
    name: Literal[DATASET_NAMES]
    # Channels-last, as the reference writes it ([28, 28, 1], [32, 32, 3], [512]); must
    # agree with the dataset. Left out, the dataset's own shape is used.
    input_shape: Optional[tuple[int, ...]] = None
    root: str = "./data"
    # Where the feature datasets' `cifar*_features/` folders are. The reference hard-codes
    # them relative to the working directory and ignores `root`, hence the default ".".
    features_root: str = "."
    batch_size: int = Field(128, gt=0)
    # Accepted for compatibility: data lives as tensors on the device, no loader workers.
    num_workers: int = Field(0, ge=0)
    val_split: float = Probability
    forget_split: float = Probability
    seed: int = 0

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, shape):
        if shape is not None and (len(shape) == 0 or any(d <= 0 for d in shape)):
            raise ValueError("must be a list of positive integers, e.g. [28, 28, 1]")
        return shape


class ModelConfig(Section):
    name: Literal[MODEL_NAMES]
    n_classes: int = Field(gt=1)


class OptimizerConfig(Section):
    optim: Literal[OPTIMIZER_NAMES] = "SGD"
    max_lr: float = Field(gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal[SCHEDULE_NAMES] = "constant"


class DPSGDConfig(Section):
    l2_norm_clip: float = Field(gt=0)
    # The guarantee for the whole forget set (group privacy), as in the reference.
    target_epsilon: float = Field(gt=0)
    target_delta: float = Probability
    seed: int = 0


class TrainingConfig(OptimizerConfig):
    epochs: int = Field(gt=0)
    # False: train now. A path: load it (a checkpoint file, or a directory holding
    # checkpoint_<epochs>.pt as the reference's logs/<id>/ckpt). "auto": the
    # content-addressed cache keyed by everything that determines the model.
    pretrained: Union[Literal[False], str] = False
    dp_sgd: Optional[DPSGDConfig] = None
    # Unused by the code, kept because the reference's figure notebook filters on it.
    group_dp: bool = False

    @field_validator("pretrained", mode="before")
    @classmethod
    def _false_auto_or_path(cls, value):
        if value is False or (isinstance(value, str) and value.strip()):
            return value
        raise ValueError("expected false (train now), 'auto' (the cache) or a checkpoint path")


class UnlearningConfig(OptimizerConfig):
    """The keys every method shares. Each method's own section (`unlearning.<method>:`)
    is declared in the method's file and composed in by `experiment_schema`."""

    epochs: int = Field(gt=0)
    noise_schedule: Literal["constant", "decreasing"] = "constant"
    init_model_clip: float = Field(0.0, ge=0)
    init_model_clip_type: Literal["clip", "clamp"] = "clip"
    init_sigma: float = Field(0.0, ge=0)
    # Checked against the registry of methods when the schema is composed.
    algorithm: str
    delta: float = Probability
    fine_grained_validation: bool = False


class PostUnlearningConfig(OptimizerConfig):
    # Defaults are the values of every reference config.
    max_lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    lr_schedule: Literal[SCHEDULE_NAMES] = "onecycle"
    post_unlearn_clip: OptionalClip = False



class WandbConfig(Section):
    project: str = "certified-unlearning"
    entity: Optional[str] = None
    log_dir: str = "./wandb_logs"
    # Metrics always go to logs/<run>/metrics.jsonl; wandb is an optional extra sink.
    mode: Literal["disabled", "offline", "online"] = "disabled"


class CompatConfig(Section):
    """Switches that reproduce the reference where it differs from the sound default."""

    reuse_noise: bool = False
    renyi_conversion: Literal["correct", "upstream"] = "correct"
    pabi_lambda0: Literal["unified", "upstream"] = "unified"
    augment_eval: bool = False
    group_privacy: Literal["tight", "upstream"] = "tight"
    dp_sgd_sampling: Literal["poisson", "shuffle"] = "poisson"


class ExperimentConfig(Section):
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainingConfig
    unlearning: UnlearningConfig
    post_unlearning: PostUnlearningConfig = PostUnlearningConfig()
    wandb: WandbConfig = WandbConfig()
    compat: CompatConfig = CompatConfig()
    # Optional prefix of the run id; otherwise "<dataset>-<algorithm>".
    name: Optional[str] = None
    device: str = "auto"
    logs_dir: str = "logs"
    checkpoints_dir: str = "checkpoints"
    # Never implemented by the reference; refusing True is better than pretending.
    secure_rng: Literal[False] = False
    save_every: int = Field(1, gt=0)
    global_seed: int = 0
    # CPU threads for torch; left out, src/threads.py chooses from the model's size and
    # the cores available. `--threads` overrides it. Not part of the run's identity.
    threads: Optional[int] = Field(None, gt=0)
    # torch.compile of the training forward on the CPU; left out, only runs with a lot of
    # convolutional arithmetic compile (src/training/compiled.py). Not part of the identity.
    torch_compile: Optional[bool] = None

    @field_validator("device")
    @classmethod
    def _known_device(cls, value):
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be one of auto, cpu, cuda, cuda:<index>")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value):
        if value is not None and (not value or any(c in value for c in "/\\ \t\n") or value.startswith(".")):
            raise ValueError("must be a non-empty file-name-safe string (no slashes or spaces)")
        return value

    def to_dict(self) -> dict:
        """The resolved config, in the YAML key spelling (dp-baseline with its hyphen).

        Sections of methods the config does not give are left out, so that adding a
        method to the registry changes no existing run id."""
        data = self.model_dump(mode="json", by_alias=True)
        for key in method_section_keys():
            if data["unlearning"].get(key, 0) is None:
                del data["unlearning"][key]
        return data


# ---------------------------------------------------------------------------------------
# The composed schema: the core above plus one section per registered method.


@functools.lru_cache(maxsize=1)
def experiment_schema() -> type[ExperimentConfig]:
    """ExperimentConfig with `unlearning.algorithm` restricted to the registered methods and
    `unlearning.<method>:` typed by each method's own section (src/unlearning/*.py).

    Built on first use: the methods import torch, which this module must not need."""
    from src.unlearning.base import registered_algorithms

    algorithms = registered_algorithms()
    sections = {}
    for name, cls in algorithms.items():
        if cls.section is not None:
            sections[name.replace("-", "_")] = (Optional[cls.section], Field(cls.section_default, alias=name))
    unlearning = create_model("UnlearningConfig", __base__=UnlearningConfig,
                              algorithm=(Literal[tuple(sorted(algorithms))], ...), **sections)
    return create_model("ExperimentConfig", __base__=ExperimentConfig, unlearning=(unlearning, ...))


def method_section_keys() -> tuple[str, ...]:
    """The YAML keys of the methods' sections (`iteration`, `dp-baseline`, ...)."""
    from src.unlearning.base import registered_algorithms

    return tuple(name for name, cls in registered_algorithms().items() if cls.section is not None)


# ---------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys silently; an experiment file must not."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key '{key}' at line {key_node.start_mark.line + 1} "
                f"(first given at line {seen[key] + 1}); each key may appear once"
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (dataset:, model:, ...), got {type(data).__name__}")
    return data


def apply_override(data: dict, override: str) -> None:
    """`dotted.key=value`, the value parsed as YAML (so 1e-3, true, [1, 2] work)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{override}': value is not valid YAML: {e}") from None
    parts = key.strip().split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{'.'.join(parts[:depth + 1])}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | tuple = ()) -> ExperimentConfig:
    data = read_yaml(path)
    for override in overrides:
        apply_override(data, override)
    return validate_config(data, source=str(path))


def validate_config(data: dict, source: str = "config") -> ExperimentConfig:
    try:
        return experiment_schema().model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source} is not a valid experiment config:\n" + _describe(e, data)) from None


def _describe(error: ValidationError, data: dict) -> str:
    messages: dict[str, list[str]] = {}
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        # Union members add their own level to the location; a user thinks in keys.
        loc = [p for p in loc if not p.startswith(("literal[", "function-after[", "float", "str", "bool", "int"))]
        dotted = ".".join(loc) or "(top level)"
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            msg = f"unknown key (value {value!r})"
            msg += f"; did you mean '{hint[0]}'?" if hint else ""
            msg += f" Allowed here: {', '.join(allowed)}"
        elif item["type"] == "missing":
            msg = "required key is missing"
        else:
            expected = item.get("ctx", {}).get("expected")
            reason = f"allowed: {expected}" if expected else item["msg"].replace("Value error, ", "")
            msg = f"got {value!r}; {reason}"
        messages.setdefault(dotted, []).append(msg)
    lines = []
    for dotted, msgs in messages.items():
        # A union (e.g. false or a path) fails once per member: say it in one line.
        head, *rest = list(dict.fromkeys(msgs))
        extra = [m.split("; ", 1)[-1] for m in rest]
        lines.append(f"  {dotted}: {head}" + "".join(f", or {m}" for m in extra))
    return "\n".join(lines)


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = experiment_schema()
    for part in loc:
        field = _field_by_key(model, part)
        if field is None:
            return []
        model = _section_type(field.annotation)
        if model is None:
            return []
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def _field_by_key(model, key):
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _section_type(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------
# Identity: run ids and pretrained-model keys come from the resolved config.

# Keys that choose where or how a run is observed, not what it computes.
_NOT_IDENTITY = ("wandb", "logs_dir", "checkpoints_dir", "device", "threads", "torch_compile")


def stable_hash(obj: Any, length: int = 10) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id(config: ExperimentConfig) -> str:
    data = config.to_dict()
    for key in _NOT_IDENTITY:
        data.pop(key, None)
    data["dataset"].pop("num_workers", None)
    prefix = config.name or f"{config.dataset.name}-{config.unlearning.algorithm}"
    return f"{prefix}-{stable_hash(data)}"


# Bumped whenever pretraining code changes what a given recipe produces.
PRETRAIN_FORMAT = 1


def pretrained_key(config: ExperimentConfig) -> str:
    """Everything that determines the pretrained model, the split seed included (D12)."""
    dataset = config.dataset
    identity = {
        "format": PRETRAIN_FORMAT,
        "dataset": {
            "name": dataset.name,
            "input_shape": dataset.input_shape,
            "batch_size": dataset.batch_size,
            "val_split": dataset.val_split,
            "seed": dataset.seed,
        },
        "model": config.model.model_dump(mode="json"),
        "training": config.training.model_dump(mode="json", exclude={"pretrained", "group_dp"}),
        "global_seed": config.global_seed,
    }
    if config.training.dp_sgd is not None:
        # The DP noise depends on the forget-set size (group privacy) and on how batches
        # are sampled and accounted.
        identity["dataset"]["forget_split"] = dataset.forget_split
        identity["compat"] = {
            "group_privacy": config.compat.group_privacy,
            "dp_sgd_sampling": config.compat.dp_sgd_sampling,
        }
    return f"{dataset.name}-{config.model.name}-{stable_hash(identity, 12)}"
