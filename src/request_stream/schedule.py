"""Which forget examples each deletion request deletes (the config's `requests:` section).

A request is a set of positions in the forget split (0 .. n-1, in that split's order).
The order in which examples are requested is a permutation seeded by `requests.seed`:
`num_requests` cuts it into equal parts (sizes differ by at most one), `sizes` into the
given parts, and `per_class` makes one request per class present in the forget set,
the classes in a seeded order. Every example of the forget set is deleted exactly once.
Numpy only: the dry-run plans a stream without torch data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.errors import ConfigError


@dataclass(frozen=True)
class RequestSchedule:
    requests: tuple[np.ndarray, ...]  # positions in the forget split deleted by each request, sorted
    forget_size: int
    description: str

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.requests]

    def positions(self, r: int) -> np.ndarray:
        """The positions request r (1-based) deletes."""
        return self.requests[r - 1]

    def deleted_through(self, r: int) -> np.ndarray:
        """Positions deleted by requests 1..r, in forget-split order."""
        if r == 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate(self.requests[:r]))

    def remaining_after(self, r: int) -> np.ndarray:
        """Positions of the forget split still in the training data after request r, in order."""
        keep = np.ones(self.forget_size, dtype=bool)
        keep[self.deleted_through(r)] = False
        return np.flatnonzero(keep)


def make_schedule(section, forget_size: int, forget_labels=None) -> RequestSchedule:
    """The schedule of a validated `requests:` section for a forget set of `forget_size`
    examples; `forget_labels` (the forget split's labels, in order) only for per_class."""
    rng = np.random.default_rng(section.seed)
    if section.per_class:
        if forget_labels is None:
            raise ValueError("per-class requests need the labels of the forget split")
        labels = np.asarray(forget_labels)
        classes = rng.permutation(np.unique(labels))
        parts = [np.flatnonzero(labels == c) for c in classes]
        text = f"one request per class of the forget set, classes in the order {[int(c) for c in classes]}"
    elif section.num_requests is not None:
        k = section.num_requests
        if k > forget_size:
            raise ConfigError(f"requests.num_requests: {k} requests cannot split a forget set of {forget_size} "
                              "examples (dataset.forget_split); each request must delete at least one example")
        parts = np.array_split(rng.permutation(forget_size), k)
        text = f"{k} requests of equal size"
    else:
        sizes = list(section.sizes)
        if sum(sizes) != forget_size:
            raise ConfigError(f"requests.sizes: {sizes} sums to {sum(sizes)}, but the forget set has {forget_size} "
                              "examples (dataset.forget_split); the requests must delete the whole forget set")
        parts = np.split(rng.permutation(forget_size), np.cumsum(sizes)[:-1])
        text = f"{len(sizes)} requests of sizes {sizes}"
    requests = tuple(np.sort(p).astype(np.int64) for p in parts)
    return RequestSchedule(requests, forget_size, f"{text}, seeded order (requests.seed {section.seed})")
