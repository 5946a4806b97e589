"""`[train] group_by_length`: Trainer's length-grouped batches in random order (runner.train.sampling),
and a stored spec that says so (its hash differs from the runs that had Trainer's order)."""

from __future__ import annotations

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from runner.train.sampling import ShuffledLengthGroupedSampler, shuffled


def batches_of(sampler, size):
    idx = list(sampler)
    return [idx[i:i + size] for i in range(0, len(idx), size)]


def test_same_batches_as_trainer_in_random_order_longest_first():
    lengths = np.random.default_rng(0).integers(3, 60, size=4000).tolist()
    size = 16
    trainer = batches_of(LengthGroupedSampler(size, lengths=lengths, generator=torch.Generator().manual_seed(1)), size)
    ours = batches_of(ShuffledLengthGroupedSampler(size, lengths=lengths, generator=torch.Generator().manual_seed(1)),
                      size)
    assert sorted(i for b in ours for i in b) == list(range(len(lengths)))
    assert sorted(map(tuple, ours)) == sorted(map(tuple, trainer))  # the very same batches, so the same padding
    assert ours[0] == trainer[0] and max(lengths[i] for i in ours[0]) == max(lengths)
    assert ours != trainer

    def longest_to_shortest_runs(bs):  # Trainer's batches fall in length for 50 batches at a time
        tops = [max(lengths[i] for i in b) for b in bs]
        return np.mean([a >= b for a, b in zip(tops, tops[1:])])

    assert longest_to_shortest_runs(trainer) > 0.9 and longest_to_shortest_runs(ours) < 0.75
    random = np.random.default_rng(2).permutation(len(lengths))
    padded = lambda bs: sum(max(lengths[i] for i in b) * len(b) for b in bs)  # noqa: E731
    assert padded(ours) < 0.8 * padded([random[i:i + size] for i in range(0, len(random), size)])


def test_other_samplers_pass_through_and_the_stored_spec_says_shuffled(tmp_path):
    from torch.utils.data import RandomSampler

    from runner.spec.models import TrainSpec

    s = RandomSampler(range(10))
    assert shuffled(s) is s
    assert TrainSpec(group_by_length=True).model_dump()["group_by_length"] == "shuffled"
    assert "group_by_length" not in TrainSpec().model_dump()
    assert TrainSpec.model_validate({"group_by_length": "shuffled"}).group_by_length is True
