"""Seeds derived from (seed, epoch, step, ...) tuples: the randomness of a training run as a pure function.

Drawing each epoch's sample order, each sample's augmentation and each step's noise from a generator seeded by
where it is in the run (rather than from one global stream) makes a run resumed from a checkpoint draw exactly
what the uninterrupted run drew, whatever the data loader or a cache did to the global generators in between.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "step_generator"]


def derive_seed(*values: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence: well spread, platform independent).

    Examples:

    ```py
    >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(1, 0)
    True

    ```
    """
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_generator(seed: int, process_index: int, epoch: int, batch_index: int) -> torch.Generator:
    """The CPU generator for one micro-batch's latents sample, noise and timesteps.

    CPU so that the numbers do not depend on the accelerator; tensors are moved to the device after drawing.
    """
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, process_index, epoch, batch_index))
