"""The schema of an experiment file, and loading it strictly.

Every key of the reference's schema is here with its type and range, plus our additions
(the `compat:` switches of docs/differences.md, `wandb.mode`, `device`, `name`,
`logs_dir`, `checkpoints_dir`, `dataset.features_root`). Each unlearning method declares
its own section (`unlearning.iteration:`, `unlearning.dp-baseline:`, ...) beside its code
in src/unlearning/ (or in the user's own file, for an outside method); `experiment_schema`
composes them with the core below, reading the methods from src/registry.py. Validation
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
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin


from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)
from pydantic.fields import FieldInfo

from src import config_yaml, plugins
from src.errors import ConfigError
from src.registry import TRAINING_ALGORITHMS, UNLEARNING_ALGORITHMS
from src.seeds import member_seed

DATASET_NAMES = ("mnist", "mnist_5k", "cifar10", "cifar10_feature", "cifar100_feature")
MODEL_NAMES = ("two_layer_net", "three_layer_net", "tiny_net", "tinier_net", "tiny_net_cifar", "simplenet")
# Langevin unlearning (issue #16): unit-norm feature tasks and the convex linear model.
DATASET_NAMES += ("mnist_3v8", "mnist_5k_3v8", "mnist_5k_unit", "cifar10_feature_3v8", "cifar10_feature_unit")
MODEL_NAMES += ("linear",)
# The audit's synthetic worst case (docs/audit.md).
DATASET_NAMES += ("worst_case",)
MODEL_NAMES += ("worst_case",)
# Datasets from the user's files (issue #25): arrays in a .npz / .pt file, torchvision's
# ImageFolder layout, and torchvision datasets in MNIST's and CIFAR's on-disk formats.
FILE_DATASETS = ("arrays", "image_folder")
DATASET_NAMES += FILE_DATASETS + ("fashion_mnist", "kmnist", "cifar100")
OPTIMIZER_NAMES = ("SGD", "RMSprop", "Adam")
SCHEDULE_NAMES = ("constant", "cos", "onecycle")

# Every float key of the schema (core and methods' sections) is a FiniteFloat: inf and
# nan (YAML's .inf, .nan, or 1e309, which reads as inf) are refused with the key's name.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

Probability = Field(gt=0, lt=1)
# Seeds reach torch generators, which take 64 bits; negative seeds would alias positive
# ones (torch maps -1 to 2**64 - 1). Refused here, not by an overflow mid-run.
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
# The run id (name + 11 characters) must stay a file name with room for the staging suffix.
MAX_NAME = 100
# Members of one ensemble run (`seeds:`): each keeps its results in summary.json.
MAX_SEEDS = 4096


def _false_or_positive(value):
    if value is not False and not value > 0:
        raise ValueError("must be false or a positive number")
    return value


# A clip that is off (`false`) or a positive radius.
OptionalClip = Annotated[Union[Literal[False], FiniteFloat], AfterValidator(_false_or_positive)]


def _admits_bool(annotation) -> bool:
    """Whether a field's type takes true/false (bool, or a Literal of them)."""
    if annotation is bool:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(arg, bool) for arg in get_args(annotation))
    return any(_admits_bool(arg) for arg in get_args(annotation) if not isinstance(arg, FieldInfo))


def _bool_for_number(annotation, value) -> bool:
    """A YAML true/false where the field wants a number (or a list of numbers): pydantic's lax
    mode reads true as 1, so `epochs: true` would run one epoch and `global_seed: false` be
    seed 0."""
    if isinstance(value, bool):
        return not _admits_bool(annotation)
    if isinstance(value, (list, tuple)):
        items = [arg for arg in get_args(annotation) if arg is not Ellipsis and not isinstance(arg, FieldInfo)]
        inner = [a for a in items if get_origin(a) in (list, tuple) or a in (list, tuple)] or items
        for kind in inner:
            args = [a for a in get_args(kind) if a is not Ellipsis] if get_origin(kind) in (list, tuple) else [kind]
            if args and any(_bool_for_number(args[0], v) for v in value):
                return True
    return False


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value, info):
        field = cls.model_fields.get(info.field_name)
        if field is not None and _bool_for_number(field.annotation, value):
            raise ValueError("expected a number, not true/false (YAML booleans are not numbers)")
        return value


# -- forget sets (src/data/forget_sets.py) ------------------------------------------------


class SubsampleConfig(Section):
    """Memorization estimated here (Feldman & Zhang): `n_models` models of `model:` trained with
    `training:`'s optimizer for `epochs` on random `fraction`s of the train split."""

    n_models: int = Field(32, ge=2)
    fraction: FiniteFloat = Field(0.5, gt=0, lt=1)
    epochs: int = Field(10, gt=0)


class MemorizationConfig(Section):
    group: Literal["low", "mid", "high", "mix"] = "high"
    # mid: scores nearest 0.5 (true memorization) or nearest the median (proxies).
    mid_rule: Literal["closest_to_half", "closest_to_median"] = "closest_to_half"
    source: Literal["subsample", "file"] = "subsample"
    # source: file: a .npy array, or a .npz holding `key`. `original`: one score per example
    # of the official train pool (Feldman's files); `post_split`: one per train-split example,
    # in the split's order.
    path: Optional[str] = None
    key: str = "memorization"
    index_space: Literal["original", "post_split"] = "original"
    subsample: SubsampleConfig = SubsampleConfig()


class ForgetSetConfig(Section):
    """`dataset.forget:` which training examples form the forget set. `random` is the
    reference's split (the default); the others keep its train/val split and choose the
    forget set inside the train split: `dataset.forget_split` of it (memorization), or every
    example of `classes` (class)."""

    strategy: Literal["random", "class", "memorization"] = "random"
    classes: Optional[tuple[int, ...]] = None
    memorization: MemorizationConfig = MemorizationConfig()

    @field_validator("classes")
    @classmethod
    def _some_classes(cls, classes):
        if classes is not None and (not classes or any(c < 0 for c in classes) or len(set(classes)) != len(classes)):
            raise ValueError("must be a non-empty list of distinct class indices >= 0")
        return classes

    @model_validator(mode="after")
    def _strategy_inputs(self):
        if self.strategy == "class" and self.classes is None:
            raise ValueError("strategy 'class' needs classes: [...] (the classes to forget)")
        if self.strategy != "class" and self.classes is not None:
            raise ValueError(f"classes is only read by strategy 'class', not '{self.strategy}'")
        if self.strategy == "memorization" and self.memorization.source == "file" and not self.memorization.path:
            raise ValueError("memorization.source 'file' needs memorization.path")
        if self.memorization.source == "subsample" and self.memorization.path is not None:
            raise ValueError(f"memorization.path {self.memorization.path!r} is only read with memorization.source: "
                             "file; set source: file to use it, or remove path (source subsample estimates the "
                             "scores here)")
        return self


def _anchored(value: str, info: ValidationInfo) -> str:
    """A relative file path made absolute against the config file's directory (the
    validation context's `base_dir`; the working directory when there is none)."""
    return plugins.canonical(value, base_dir=(info.context or {}).get("base_dir"))


class DatasetConfig(Section):
    name: Literal[DATASET_NAMES]
    # The file (`arrays`: .npz or .pt) or folder (`image_folder`) of a dataset from files,
    # relative to the config file's directory (src/data/file_dataset.py).
    path: Optional[str] = None
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
    val_split: FiniteFloat = Probability
    forget_split: FiniteFloat = Probability
    seed: Seed = 0
    forget: ForgetSetConfig = ForgetSetConfig()

    @field_validator("path")
    @classmethod
    def _anchor_path(cls, value, info: ValidationInfo):
        if value is None:
            return value
        if not value.strip() or "\0" in value:
            raise ValueError("must name a file or folder")
        return plugins.anchor_path(value, (info.context or {}).get("base_dir"))

    @model_validator(mode="after")
    def _path_for_files(self):
        if self.name in FILE_DATASETS and self.path is None:
            raise ValueError(f"dataset.name '{self.name}' needs dataset.path (the "
                             f"{'.npz or .pt file' if self.name == 'arrays' else 'folder with train/ and test/'})")
        if self.name not in FILE_DATASETS and self.path is not None:
            raise ValueError(f"path is only read by datasets {list(FILE_DATASETS)}, not '{self.name}' "
                             "(which reads dataset.root)")
        return self

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, shape):
        if shape is not None and (len(shape) == 0 or any(d <= 0 for d in shape)):
            raise ValueError("must be a list of positive integers, e.g. [28, 28, 1]")
        return shape


class ModelConfig(Section):
    # A built-in name, or the user's factory: 'file.py:function' (relative to the config
    # file's directory) or 'package.module:function', called as the built-ins are,
    # factory(input_shape, num_classes, generator) -> torch.nn.Module (src/models/model.py).
    name: str
    n_classes: int = Field(gt=1)
    # BatchNorm running statistics are computed from data: after pretraining they carry
    # the forget set. "training": keep them (refused for certified methods); "retain":
    # recompute them on the retain set after unlearning, so the released buffers depend
    # on retain data and the certified parameters only (src/models/buffers.py).
    batchnorm_stats: Literal["training", "retain"] = "training"

    @field_validator("name")
    @classmethod
    def _known_or_spec(cls, value, info: ValidationInfo):
        if value in MODEL_NAMES:
            return value
        if plugins.is_spec(value):
            return _anchored(value, info)
        raise ValueError(f"unknown model; known: {', '.join(map(repr, MODEL_NAMES))}, or your own factory as "
                         "'file.py:function' (relative to the config file) or 'package.module:function'")


class SAMConfig(Section):
    """Sharpness-aware steps (Foret et al.; sign max as in Sharp MinMax): the gradient at
    theta + rho T^2 g / ||T g|| (T = |theta| if adaptive, else I) enters as
    g + sign * lamb * (g_adv - g); src/training/sam.py. Never part of a certified phase."""

    rho: FiniteFloat = Field(0.1, ge=0)
    adaptive: bool = False
    lamb: FiniteFloat = Field(1.0, ge=0)
    sign: Literal["min", "max"] = "min"


class OptimizerConfig(Section):
    optim: Literal[OPTIMIZER_NAMES] = "SGD"
    max_lr: FiniteFloat = Field(gt=0)
    momentum: FiniteFloat = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: FiniteFloat = Field(0.0, ge=0)
    lr_schedule: Literal[SCHEDULE_NAMES] = "constant"
    sam: Optional[SAMConfig] = None


class DPSGDConfig(Section):
    l2_norm_clip: FiniteFloat = Field(gt=0)
    # The guarantee for the whole forget set (group privacy), as in the reference.
    target_epsilon: FiniteFloat = Field(gt=0)
    target_delta: FiniteFloat = Probability
    seed: Seed = 0


MAX_INIT_MEAN = 1e15


class LangevinTrainingConfig(Section):
    """`training.langevin:` full-batch noisy gradient descent, the chain of Langevin
    unlearning (src/training/langevin.py): `epochs` steps of
    theta <- theta - max_lr (grad + weight_decay theta) + sqrt(2 max_lr) sigma xi from
    N(init_mean, 2 sigma^2 / weight_decay). sigma 0 is noise-free gradient descent (D2D)."""

    sigma: float = Field(ge=0, allow_inf_nan=False)
    init_mean: float = Field(0.0, allow_inf_nan=False)
    # The certificate's constants of the loss (the l2 term excluded): "auto" is the linear
    # model's bound on unit-norm data, or a number at least that large.
    smoothness: Union[Literal["auto"], Annotated[float, Field(gt=0, allow_inf_nan=False)]] = "auto"
    gradient_bound: Union[Literal["auto"], Annotated[float, Field(gt=0, allow_inf_nan=False)]] = "auto"

    @field_validator("init_mean")
    @classmethod
    def _fits_float32(cls, value):
        # The chain runs in float32: 1e300 cannot even be stored there, and past MAX_INIT_MEAN
        # the l2 term (m/2 times the sum of d squares) overflows for models of 10^4+ parameters.
        if abs(value) > MAX_INIT_MEAN:
            raise ValueError(f"must be within +-{MAX_INIT_MEAN:g}: the chain runs in float32 (largest "
                             "3.4e38), where the l2 term of parameters this large overflows")
        return value


class PNSGDTrainingConfig(Section):
    """`training.pnsgd:` projected noisy SGD with cyclic mini-batches of
    dataset.batch_size, the chain of noisy mini-batch SGD unlearning (src/training/pnsgd.py):
    `epochs` passes over one fixed partition of the data, each step
    theta <- Pi_R(theta - max_lr (batch grad + weight_decay theta) + sqrt(2 max_lr) sigma xi)."""

    sigma: float = Field(gt=0, allow_inf_nan=False)
    # R: the iterates are projected onto the ball of this radius (the paper's C_R).
    projection_radius: float = Field(gt=0, allow_inf_nan=False)
    smoothness: Union[Literal["auto"], Annotated[float, Field(gt=0, allow_inf_nan=False)]] = "auto"
    gradient_bound: Union[Literal["auto"], Annotated[float, Field(gt=0, allow_inf_nan=False)]] = "auto"


class TrainingConfig(OptimizerConfig):
    epochs: int = Field(gt=0)
    # "langevin": full-batch (noisy) gradient descent with `training.langevin`; each of the
    # `epochs` steps is one pass over the data (Langevin unlearning, issue #16).
    algorithm: Literal["sgd", "langevin", "pnsgd"] = "sgd"
    langevin: Optional[LangevinTrainingConfig] = None
    # "pnsgd": projected noisy SGD with cyclic mini-batches (`training.pnsgd`; issue #27).
    pnsgd: Optional[PNSGDTrainingConfig] = None
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
        if value is False or (isinstance(value, str) and value.strip() and "\0" not in value):
            return value
        raise ValueError("expected false (train now), 'auto' (the cache) or a checkpoint path")

    @property
    def method(self) -> str:
        """The training algorithm this section asks for (its name in src/registry.py):
        `algorithm`, where sgd with a `dp_sgd:` section is DP-SGD."""
        return "dp_sgd" if self.algorithm == "sgd" and self.dp_sgd is not None else self.algorithm

    @model_validator(mode="after")
    def _no_sam_in_dp_sgd(self):
        if self.sam is not None and self.dp_sgd is not None:
            raise ValueError("sam and dp_sgd cannot be combined: the DP-SGD accountant assumes one clipped, noised "
                             "gradient per step; remove training.sam")
        return self


class UnlearningConfig(OptimizerConfig):
    """The keys every method shares. Each method's own section (`unlearning.<method>:`)
    is declared in the method's file and composed in by `experiment_schema`."""

    epochs: int = Field(gt=0)
    noise_schedule: Literal["constant", "decreasing"] = "constant"
    init_model_clip: FiniteFloat = Field(0.0, ge=0)
    init_model_clip_type: Literal["clip", "clamp"] = "clip"
    init_sigma: FiniteFloat = Field(0.0, ge=0)
    # Checked against the registry of methods when the schema is composed: a built-in name,
    # or an outside method as path/to/file.py:Class or package.module:Class (docs/methods.md).
    algorithm: str
    delta: FiniteFloat = Probability
    fine_grained_validation: bool = False


class PostUnlearningConfig(OptimizerConfig):
    # Defaults are the values of every reference config.
    max_lr: FiniteFloat = Field(0.1, gt=0)
    weight_decay: FiniteFloat = Field(5e-4, ge=0)
    lr_schedule: Literal[SCHEDULE_NAMES] = "onecycle"
    post_unlearn_clip: OptionalClip = False



class RequestsConfig(Section):
    """`requests:` the forget set deleted as a stream of requests, one after another, each a
    pass through the unlearning phases on what remains (docs/requests.md). Exactly one of
    num_requests (equal sizes), sizes (explicit, summing to the forget set) or per_class."""

    num_requests: Optional[int] = Field(None, gt=0)
    sizes: Optional[list[Annotated[int, Field(gt=0)]]] = Field(None, min_length=1)
    per_class: bool = False
    # Seeds the order in which the forget examples (or, per class, the classes) are requested.
    seed: Seed = 0
    # The compute budget of each request in epochs over its retain set; default unlearning.epochs.
    epochs: Optional[int] = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_split(self):
        given = [k for k, v in (("num_requests", self.num_requests), ("sizes", self.sizes),
                                ("per_class", self.per_class or None)) if v is not None]
        if len(given) != 1:
            raise ValueError("exactly one of num_requests (equal sizes), sizes (a list) and per_class: true must "
                             f"be given; got {given or 'none'}")
        return self


# -- forgetting metrics (src/evaluation/) -------------------------------------------------

MIA_FEATURES = ("correctness", "confidence", "entropy", "m_entropy", "prob", "loss")


class SVCMIAConfig(Section):
    """SVC membership inference, forget-efficacy protocol (SalUn/RUM): one scikit-learn SVC
    per feature, fit on shadow members (retain) vs non-members; efficacy = the fraction of
    the forget set it calls non-member."""

    enabled: bool = True
    # At least one: with none there is no attack and no efficacy to report.
    features: tuple[Literal[MIA_FEATURES], ...] = Field(MIA_FEATURES, min_length=1)
    C: FiniteFloat = Field(3.0, gt=0)
    kernel: Literal["rbf", "linear", "poly", "sigmoid"] = "rbf"
    gamma: Union[Literal["auto", "scale"], FiniteFloat] = "auto"
    shadow_nonmember: Literal["test", "val"] = "test"
    # Examples per shadow class, at most the smaller split. The paper used every test example
    # (10,000 on CIFAR); an RBF SVC costs O(n^2), so the default stops at 2,000.
    n_shadow: int = Field(2000, gt=0)
    # first: the first n retain examples (the paper); random: a seeded sample.
    shadow_sampling: Literal["random", "first"] = "random"
    report_feature: Literal[MIA_FEATURES] = "confidence"
    # true: the upstream m_entropy (label-independent); false: Song & Mittal's.
    legacy_m_entropy: bool = False


class ThresholdMIAConfig(Section):
    """Song & Mittal's threshold attack, per class: thresholds from the SVC's shadow sets,
    scored on forget (members before unlearning) against the held-out split the shadow did
    not use (val when the shadow's non-members are test, and vice versa)."""

    enabled: bool = True
    class_conditional: bool = True
    features: tuple[Literal["confidence", "entropy", "m_entropy", "loss"], ...] = Field(
        ("confidence", "entropy", "m_entropy", "loss"), min_length=1)
    fpr: tuple[Annotated[FiniteFloat, Field(gt=0, lt=1)], ...] = Field((0.1, 0.01), min_length=1)


class MIAConfig(Section):
    svc: SVCMIAConfig = SVCMIAConfig()
    threshold: ThresholdMIAConfig = ThresholdMIAConfig()


class ToWConfig(Section):
    """Tug of war (RUM): prod over terms of (1 - |acc gap to retrain|), against the retrain run
    of the same forget set found in logs_dir; ToW-MIA swaps the forget term for the MIA gap."""

    enabled: bool = True
    abs_gap: bool = True  # false: sharp-unlearn's signed gaps (can exceed 1)
    # At least one: the empty product is 1, a perfect score whatever the gaps.
    terms: tuple[Literal["forget", "retain", "val", "test"], ...] = Field(("forget", "retain", "test"), min_length=1)
    mia_feature: Literal[MIA_FEATURES] = "confidence"


class EvaluationConfig(Section):
    """`evaluation:` what every run measures after unlearning, certified or not."""

    mia: MIAConfig = MIAConfig()
    tow: ToWConfig = ToWConfig()


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
    # exact: the forget set's Binomial(k, q) members per batch, composed by privacy loss
    # distributions; tight: the (eps, delta) group lemma; upstream: the reference's (D4).
    group_privacy: Literal["exact", "tight", "upstream"] = "exact"
    dp_sgd_sampling: Literal["poisson", "shuffle"] = "poisson"
    # upstream: the original Langevin code's binary chain, the l2 term inside the
    # per-example clip (src/training/langevin_clipping.py); voids the certificate.
    langevin_clipping: Literal["none", "upstream"] = "none"
    # The empirical baselines as sharp-unlearn / RUM code runs them (docs/differences.md#rum-code):
    # the saliency mask's forget gradient summed while SGD steps ascend on the forget batches;
    # Sharp MinMax masking only the perturbed gradient; NegGrad+ cycling one permutation of the
    # forget batches; random labels only on CIFAR-10 (the true labels elsewhere).
    saliency_mask: Literal["fixed", "sgd_steps"] = "fixed"
    sharp_minmax_mask: Literal["combined", "perturbed_only"] = "combined"
    neggrad_plus_forget_order: Literal["reshuffle", "cached"] = "reshuffle"
    random_labels: Literal["always", "upstream"] = "always"


# Compat switches added after run ids existed (issue #24 and langevin_clipping): part of a
# run's identity only when set, so a config that leaves them at their defaults keeps its run id.
LATER_COMPAT = ("langevin_clipping", "saliency_mask", "sharp_minmax_mask", "neggrad_plus_forget_order",
                "random_labels")


class ExperimentConfig(Section):
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainingConfig
    unlearning: UnlearningConfig
    post_unlearning: PostUnlearningConfig = PostUnlearningConfig()
    wandb: WandbConfig = WandbConfig()
    compat: CompatConfig = CompatConfig()
    # A stream of deletion requests instead of one forget set (docs/requests.md).
    requests: Optional[RequestsConfig] = None
    evaluation: EvaluationConfig = EvaluationConfig()
    # Optional prefix of the run id; otherwise "<dataset>-<algorithm>".
    name: Optional[str] = None
    device: str = "auto"
    logs_dir: str = "logs"
    checkpoints_dir: str = "checkpoints"
    # Release mode: noise from OS entropy, never written; no metric of a model before its
    # certificate logged or printed; the summary says releasable: true (src/entropy.py).
    secure_rng: bool = False
    save_every: int = Field(1, gt=0)
    global_seed: Seed = 0
    # Members of an ensemble run in one process and one run directory (src/runner.py):
    # member i is the single run of this config with global_seed member_seed(global_seed, i)
    # (src/seeds.py); member 0 is the config's own run.
    seeds: int = Field(1, gt=0, le=MAX_SEEDS)
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
        if value is not None and (not value or any(c in value for c in "/\\ \t\n") or value.startswith(".")
                                  or not value.isprintable()):
            raise ValueError("must be a non-empty file-name-safe string (no slashes or spaces)")
        if value is not None and len(value.encode()) > MAX_NAME:
            raise ValueError(f"must be at most {MAX_NAME} bytes long (it starts the run's directory name)")
        return value

    @field_validator("logs_dir", "checkpoints_dir")
    @classmethod
    def _directory(cls, value):
        if not value.strip() or "\0" in value:
            raise ValueError("must name a directory (an empty value would write into the working directory)")
        return value

    def to_dict(self) -> dict:
        """The resolved config, in the YAML key spelling (dp-baseline with its hyphen).

        Sections of methods the config does not give are left out, so that adding a
        method to the registry changes no existing run id."""
        data = self.model_dump(mode="json", by_alias=True)
        shared = {field.alias or name for name, field in UnlearningConfig.model_fields.items()}
        for key in [k for k, v in data["unlearning"].items() if v is None and k not in shared]:
            del data["unlearning"][key]  # a method's own section, not given
        if data.get("requests", 0) is None:  # absent: run ids of single-request runs unchanged
            del data["requests"]
        if data.get("seeds") == 1:  # one member: the run id it had before ensembles existed
            del data["seeds"]
        if data["dataset"].get("path", 0) is None:  # likewise the keys of issue #25 when unused
            del data["dataset"]["path"]
        if data["model"].get("batchnorm_stats") == "training":
            del data["model"]["batchnorm_stats"]
        _drop_default_training_algorithm(data["training"])
        # Likewise later additions at their defaults (forget sets, metrics, SAM): a config
        # that does not use them keeps the run id it had before they existed.
        if self.dataset.forget == ForgetSetConfig():
            del data["dataset"]["forget"]
        if self.evaluation == EvaluationConfig():
            del data["evaluation"]
        for key in LATER_COMPAT:
            if getattr(self.compat, key) == CompatConfig.model_fields[key].default:
                del data["compat"][key]
        for phase in ("training", "unlearning", "post_unlearning"):
            if data[phase].get("sam", 0) is None:
                del data[phase]["sam"]
        return data


def _drop_default_training_algorithm(training: dict) -> dict:
    """Ordinary SGD training leaves no trace of the Langevin keys (run ids and pretrained
    keys stay what they were before those keys existed)."""
    if training.get("pnsgd", 0) is None:
        training.pop("pnsgd")
    if training.get("algorithm") == "sgd" and training.get("langevin") is None:
        training.pop("algorithm", None)
        training.pop("langevin", None)
    return training


# ---------------------------------------------------------------------------------------
# The composed schema: the core above plus one section per registered method.


@functools.lru_cache(maxsize=8)
def experiment_schema(outside: type | None = None) -> type[ExperimentConfig]:
    """ExperimentConfig with `unlearning.algorithm` restricted to the registered methods (and
    the `outside` method's spec, when a config names one) and `unlearning.<method>:` typed by
    each method's own section (src/unlearning/*.py, or the outside method's file).

    The registry is filled by src/catalogue.py, which every entry point imports first: the
    methods import torch, which this module must not need."""
    algorithms = UNLEARNING_ALGORITHMS.builtins()
    choices = sorted(algorithms)
    if outside is not None:
        algorithms = {**algorithms, outside.name: outside}
        choices.append(outside.spec)
    sections = {}
    for name, cls in algorithms.items():
        if cls.section is not None:
            sections[name.replace("-", "_")] = (Optional[cls.section], Field(cls.section_default, alias=name))
    unlearning = create_model("UnlearningConfig", __base__=UnlearningConfig,
                              algorithm=(Literal[tuple(choices)], ...), **sections)
    return create_model("ExperimentConfig", __base__=ExperimentConfig, unlearning=(unlearning, ...))


def outside_method(data: dict, base_dir: Path | None) -> type | None:
    """The class an outside `unlearning.algorithm` names (its file path made absolute in `data`,
    so that the config means the same file wherever it is read again), or None."""
    unlearning = data.get("unlearning")
    value = unlearning.get("algorithm") if isinstance(unlearning, dict) else None
    if not plugins.is_spec(value) or value in UNLEARNING_ALGORITHMS.builtins():
        return None
    cls = UNLEARNING_ALGORITHMS.get(value, base_dir)
    if cls.name.replace("-", "_") in UnlearningConfig.model_fields:
        raise ConfigError(f"unlearning.algorithm: '{value}': its name '{cls.name}' is a key every method shares "
                          f"(unlearning.{cls.name}); choose another")
    unlearning["algorithm"] = cls.spec
    return cls


# ---------------------------------------------------------------------------------------
# Loading


def read_yaml(path: str | Path) -> dict:
    """A config file as YAML 1.2, strictly and within bounds (src/config_yaml.py)."""
    data = config_yaml.read_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (dataset:, model:, ...), got {type(data).__name__}")
    return data


def apply_override(data: dict, override: str) -> None:
    """`dotted.key=value`, the value parsed as YAML (so 1e-3, true, [1, 2] work)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {config_yaml.shorten(override)} must look like dotted.key=value")
    where = f"override {config_yaml.shorten(override)}"
    value = config_yaml.parse_value(raw, where) if raw.strip() else ""
    parts = key.strip().split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {config_yaml.shorten('.'.join(parts[:depth + 1]))} is a value, not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | tuple = ()) -> ExperimentConfig:
    data = read_yaml(path)
    for override in overrides:
        apply_override(data, override)
    return validate_config(data, source=str(path), base_dir=Path(path).resolve().parent)


def validate_config(data: dict, source: str = "config", base_dir: Path | None = None) -> ExperimentConfig:
    """`base_dir`: where relative paths to the user's files (model.name, dataset.path, an
    outside unlearning.algorithm) start: the config file's directory; default the working
    directory."""
    schema = experiment_schema(outside_method(data, base_dir))
    try:
        return schema.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise ConfigError(f"{source} is not a valid experiment config:\n" + _describe(e, data, schema)) from None


def _describe(error: ValidationError, data: dict, schema) -> str:
    messages: dict[str, list[str]] = {}
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        # Union members add their own level to the location; a user thinks in keys.
        loc = [p for p in loc if not p.startswith(("literal[", "function-after[", "constrained-", "float", "str", "bool", "int"))]
        dotted = config_yaml.cut(".".join(loc), 120) or "(top level)"
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc[:-1])
            hint = difflib.get_close_matches(loc[-1][:100], allowed, n=1)
            msg = f"unknown key (value {config_yaml.shorten(value)})"
            msg += f"; did you mean '{hint[0]}'?" if hint else ""
            msg += f" Allowed here: {', '.join(allowed)}"
        elif item["type"] == "missing":
            msg = "required key is missing"
        else:
            expected = item.get("ctx", {}).get("expected")
            reason = f"allowed: {expected}" if expected else item["msg"].replace("Value error, ", "")
            msg = f"got {config_yaml.shorten(value)}; {reason}"
        messages.setdefault(dotted, []).append(msg)
    lines = []
    for dotted, msgs in messages.items():
        # A union (e.g. false or a path) fails once per member: say it in one line.
        head, *rest = list(dict.fromkeys(msgs))
        extra = [m.split("; ", 1)[-1] for m in rest]
        lines.append(f"  {dotted}: {head}" + "".join(f", or {m}" for m in extra))
    return "\n".join(lines)


def _allowed_keys(schema, loc: list[str]) -> list[str]:
    model: Any = schema
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


def member_overrides(config: ExperimentConfig, i: int) -> dict:
    """The dotted keys in which member i of an ensemble differs from the config: its global
    seed and, when it trains by DP-SGD, DP-SGD's own seed (noise and batch sampling), each
    `member_seed(seed, i)`. The data split, the forget set and a stream's request order
    (dataset.seed, requests.seed) are the same for every member. Member 0: no change."""
    out = {"global_seed": member_seed(config.global_seed, i)}
    if config.training.dp_sgd is not None:
        out["training.dp_sgd.seed"] = member_seed(config.training.dp_sgd.seed, i)
    return out


def member_config(config: ExperimentConfig, i: int) -> ExperimentConfig:
    """Member i of an ensemble as the single run it is (`seeds: 1`)."""
    changes = member_overrides(config, i)
    training = config.training
    if "training.dp_sgd.seed" in changes:
        dp = training.dp_sgd.model_copy(update={"seed": changes["training.dp_sgd.seed"]})
        training = training.model_copy(update={"dp_sgd": dp})
    return config.model_copy(update={"global_seed": changes["global_seed"], "training": training, "seeds": 1})


def user_files_by_content(data: dict) -> dict:
    """The user's model file and dataset file named by what they hold, not where they are:
    run ids and cached models follow an edit of the code or the data, and a moved clone
    keeps them."""
    name = data["model"]["name"]
    if plugins.is_spec(name):
        data["model"]["name"] = f"{plugins.label(name)}@{plugins.source_digest(name)}"
    algorithm = data.get("unlearning", {}).get("algorithm")
    if plugins.is_spec(algorithm):
        data["unlearning"]["algorithm"] = f"{plugins.label(algorithm)}@{plugins.source_digest(algorithm)}"
    if data["dataset"].get("path") is not None:
        data["dataset"]["path"] = f"{Path(data['dataset']['path']).name}@{_data_digest(data['dataset']['path'])}"
    return data


@functools.lru_cache(maxsize=16)
def _data_digest_cached(path: str, stamp) -> str:
    return plugins.content_digest(path)


def _data_digest(path: str) -> str:
    try:  # read once per process while the file is unchanged (a large file costs seconds)
        stat = Path(path).stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = None
    return _data_digest_cached(path, stamp)


def model_label(name: str) -> str:
    """model.name as it may appear in a file name (cache keys)."""
    return plugins.label(name) if plugins.is_spec(name) else name


def run_id(config: ExperimentConfig) -> str:
    data = user_files_by_content(config.to_dict())
    for key in _NOT_IDENTITY:
        data.pop(key, None)
    data["dataset"].pop("num_workers", None)
    if plugins.is_spec(config.unlearning.algorithm):  # an outside method: its code is part of what ran
        data["unlearning"]["algorithm_source"] = plugins.source_digest(config.unlearning.algorithm)
    prefix = config.name or f"{config.dataset.name}-{algorithm_label(config.unlearning.algorithm)}"
    return f"{prefix}-{stable_hash(data)}"


def algorithm_label(algorithm: str) -> str:
    """A method's name as a run id spells it: an outside method's class name, not its path."""
    return algorithm.rpartition(":")[2] if plugins.is_spec(algorithm) else algorithm


# Bumped whenever pretraining code changes what a given recipe produces
# (2: DP-SGD noise and batches from purpose-derived seeds, records bound by a content hash).
PRETRAIN_FORMAT = 2


def pretrained_key(config: ExperimentConfig, without_forget: bool = False) -> str:
    """Everything that determines the pretrained model, the split seed included (D12).

    `without_forget`: the same recipe trained on the retain set alone (the audit's world
    B, src/audit/), which also depends on the forget split."""
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
        # batchnorm_stats acts after unlearning: the same pretrained model either way.
        "model": config.model.model_dump(mode="json", exclude={"batchnorm_stats"}),
        "training": _drop_default_training_algorithm(config.training.model_dump(
            mode="json", exclude={"pretrained", "group_dp"} | ({"sam"} if config.training.sam is None else set()))),
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
        # Release mode needs DP-SGD noise no seed replays: never the research-mode model.
        identity["secure_rng"] = config.secure_rng
    if getattr(TRAINING_ALGORITHMS.get(config.training.method), "orders_by_forget_set", False):
        # The chain's batches depend on which examples are forgotten: a model trained for
        # another forget set is another chain, and the accountant's start would not hold.
        identity["dataset"]["forget_split"] = dataset.forget_split
        identity["dataset"]["forget"] = dataset.forget.model_dump(mode="json")
    if config.compat.langevin_clipping != "none":  # it changes the chain's every step
        identity["langevin_clipping"] = config.compat.langevin_clipping
    if dataset.path is not None:
        identity["dataset"]["path"] = dataset.path
    identity = user_files_by_content(identity)
    model = model_label(config.model.name)
    if without_forget:
        identity["dataset"]["forget_split"] = dataset.forget_split
        identity["trained_on"] = "retain"
        return f"{dataset.name}-{model}-retain-{stable_hash(identity, 12)}"
    return f"{dataset.name}-{model}-{stable_hash(identity, 12)}"
