"""`worst_case`: the synthetic data of the audit's worst case (docs/audit.md), not a task.

Every example, train and test, is the same input u = e_1 in R^8 with label 0. With the
`worst_case` model (src/models/worst_case.py) the loss of every batch is, up to a constant,
-s |<w, u>|: its gradient has norm s, far above any clip the certified methods use, and
points away from the hyperplane <w, u> = 0. A clipped gradient step therefore moves a model
by exactly eta C1 along +u or -u, whichever side it is on: two trajectories started on
either side are pushed apart at the full clip at every step, the drift that privacy
amplification by iteration budgets for and benign data never spends.
"""

from __future__ import annotations

import torch

from src.data.raw import RawDataset

FEATURES = 8


class WorstCase:
    official_sizes = (1000, 100)
    input_shape = (FEATURES,)
    num_classes = 2
    fixed_shape = True

    @staticmethod
    def files_present(config) -> bool:
        return True

    @staticmethod
    def load(config, device) -> RawDataset:
        def rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.zeros(n, FEATURES)
            x[:, 0] = 1.0
            return x.to(device), torch.zeros(n, dtype=torch.long, device=device)

        train, test = rows(WorstCase.official_sizes[0]), rows(WorstCase.official_sizes[1])
        return RawDataset(*train, *test, num_classes=2, input_shape=WorstCase.input_shape)
