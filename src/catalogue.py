"""The catalogue: every built-in method, listed once, filling the registries of src/registry.py.

It sits above everything it lists (the training and unlearning algorithms, the memorization
estimator) and above the registries, so that nothing that reads a registry imports what is
in it. Every entry point imports this module before it reads a config (experiment.py, the
launcher, the audit, the figures, the tests' conftest). Adding a method: its file under
src/unlearning/ and one line below (docs/architecture.md).
"""

from __future__ import annotations

from src.evaluation.memorization import cached_subsample_scores
from src.registry import MEMORIZATION_ESTIMATORS, TRAINING_ALGORITHMS, UNLEARNING_ALGORITHMS
from src.training.algorithm import TrainingAlgorithm
from src.training.dp_sgd import DPSGDTraining
from src.training.langevin import LangevinTraining
from src.training.pnsgd import PNSGDTraining
from src.training.sgd import SGDTraining
from src.unlearning.base import UnlearningAlgorithm
from src.unlearning.d2d import DescentToDelete
from src.unlearning.dp_sgd import DPSGDGroupPrivacy
from src.unlearning.finetune import FineTune
from src.unlearning.gradient_clipping import GradientClipping
from src.unlearning.influence import Influence
from src.unlearning.l1_sparse import L1Sparse
from src.unlearning.langevin import LangevinUnlearning
from src.unlearning.model_clipping import ModelClipping
from src.unlearning.neggrad import NegGrad
from src.unlearning.neggrad_plus import NegGradPlus
from src.unlearning.output_perturbation import OutputPerturbation
from src.unlearning.outside import adopt
from src.unlearning.pnsgd import NoisyMiniBatchSGD
from src.unlearning.random_label import RandomLabel
from src.unlearning.retrain import Retrain
from src.unlearning.rum import RUM
from src.unlearning.salun import SalUn
from src.unlearning.scrub import Scrub
from src.unlearning.sharp_minmax import SharpMinMax

UNLEARNING = (
    # certified (src/privacy/ accountants)
    DPSGDGroupPrivacy, GradientClipping, ModelClipping, OutputPerturbation, Retrain,
    # the convex methods (issues #16, #27)
    DescentToDelete, LangevinUnlearning, NoisyMiniBatchSGD,
    # the empirical baselines (no certificate): src/unlearning/empirical.py
    FineTune, Influence, L1Sparse, NegGrad, NegGradPlus, RandomLabel, SalUn, Scrub, SharpMinMax,
    # RUM, the meta-algorithm over groups of the forget set (issue #24): src/unlearning/rum.py
    RUM,
)
TRAINING = (SGDTraining, DPSGDTraining, LangevinTraining, PNSGDTraining)

UNLEARNING_ALGORITHMS.fill(UNLEARNING, interface=UnlearningAlgorithm, adopt=adopt)
TRAINING_ALGORITHMS.fill(TRAINING, interface=TrainingAlgorithm)
MEMORIZATION_ESTIMATORS.fill([cached_subsample_scores], names=["subsample"])
