"""L1-sparse (Jia et al., "Model sparsity can simplify machine unlearning"; FT_l1 upstream):
FT with an L1 penalty on every parameter,

    CE(B_r) + alpha_e * ||theta||_1,   alpha_e = alpha * (1 - e / (E - E0)) for e < E - E0, else 0,

e the 0-based epoch, E = unlearning.epochs, E0 = no_l1_epochs: alpha in the first epoch,
decaying linearly to alpha / (E - E0), then none. Nothing is pruned. alpha ~ 1e-4 is the
ResNet value; on a model with thousands of parameters the same alpha is a far weaker
penalty, hence `normalize_by_num_params` (||theta||_1 / d).
"""

from __future__ import annotations

from pydantic import Field

from src.config import FiniteFloat, Section
from src.errors import ConfigError
from src.unlearning.empirical import EmpiricalUnlearning


class L1SparseConfig(Section):
    """`unlearning.l1_sparse:`"""

    alpha: FiniteFloat = Field(1e-4, ge=0)
    no_l1_epochs: int = Field(0, ge=0)
    normalize_by_num_params: bool = False


def l1_coefficient(alpha: float, e: int, epochs: int, no_l1_epochs: int) -> float:
    active = epochs - no_l1_epochs
    return alpha * (1 - e / active) if e < active else 0.0


class L1Sparse(EmpiricalUnlearning):
    name = "l1_sparse"
    vectorised = True  # members as one theta [N, d] (src/unlearning/empirical.py; tests/test_members.py)
    section = L1SparseConfig
    section_default = L1SparseConfig()

    @classmethod
    def check_config(cls, config) -> None:
        u = config.unlearning
        if u.l1_sparse.no_l1_epochs >= u.epochs:
            raise ConfigError(f"unlearning.l1_sparse.no_l1_epochs: {u.l1_sparse.no_l1_epochs} leaves no epoch with the "
                              f"L1 term (unlearning.epochs is {u.epochs}); use fewer")

    def run_epoch(self, e, tally) -> None:
        cfg = self.config.unlearning.l1_sparse
        coefficient = l1_coefficient(cfg.alpha, e, self.config.unlearning.epochs, cfg.no_l1_epochs)
        if cfg.normalize_by_num_params:
            coefficient /= self.model.num_parameters
        theta = self.model.theta

        def loss(x, y):
            ce, correct = self.cross_entropy(x, y)
            return ce + coefficient * theta.abs().sum(-1), (ce.detach(), correct)

        for x, y in self.retain_batches.epoch():
            _, (ce, correct) = self.descend(lambda: loss(x, y), tally, y.shape[-1])
            tally.retain(ce, correct, y.shape[-1])
