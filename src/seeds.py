"""Independent random streams derived from the config's seeds.

Each purpose (model initialisation, data order and augmentation, unlearning noise, ...)
gets its own generator, so adding a draw in one place never shifts another stream
(the reference's global generator did, D18).
"""

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def member_seed(seed: int, i: int) -> int:
    """The seed of member i of an ensemble (`seeds: N`): the config's own for member 0, a
    derived one otherwise. Member i is the single run whose config holds this seed."""
    return int(seed) if i == 0 else derive_seed(seed, f"ensemble-member-{i}")
