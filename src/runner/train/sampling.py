"""`[train] group_by_length`: batches of similar lengths, in random order.

Trainer's length-grouped sampler cuts a random permutation into groups of 50 batches, sorts each
group by length and cuts it into batches, which then come longest to shortest within every group:
an epoch is a few sweeps from long texts to short ones, a curriculum nobody asked for (Trainer
orders them so that the longest batch comes first and runs out of memory at once, if it is going
to). `ShuffledLengthGroupedSampler` keeps the same batches, so the same padding is saved, and draws
their order at random from the same generator, the longest batch still first. What each order does
to accuracy, measured: docs/explanation/benchmarks.md. Several processes (DDP) keep Trainer's distributed
length-grouped sampler as it is.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped batches (each `batch_size` consecutive indices), in random order."""

    def __iter__(self):
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        # the longest batch stays first (Trainer puts it there: memory runs out at once or never)
        rest = (torch.randperm(len(batches) - 1, generator=self.generator) + 1).tolist() if len(batches) > 1 else []
        return iter([i for b in [0, *rest] for i in batches[b]])


def shuffled(sampler):
    """Trainer's `LengthGroupedSampler` as its shuffled counterpart; any other sampler as it is."""
    if type(sampler) is LengthGroupedSampler:
        return ShuffledLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, generator=sampler.generator)
    return sampler
