"""Losses and metrics against PyTorch and hand-computed values (no model, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.builtins.losses import CrossEntropyOptions, FocalOptions, build_cross_entropy, build_focal
from runner.core.maths import accuracy, f1_macro
from runner.errors import OptionError
from runner.plugins.contexts import LossContext
from runner.plugins.registry import load_registry
from runner.train.losses import focal_loss

C = 4


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, C, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, C, (64,), generator=g)
    return logits, labels


def focal(gamma=2.0, alpha=None, smoothing=0.0, counts=None, modulation="true_class", num_labels=C):
    ctx = LossContext(num_labels=num_labels, class_counts=counts or [], label_smoothing=smoothing)
    return build_focal(ctx, FocalOptions(gamma=gamma, alpha=alpha, modulation=modulation))


MODULATIONS = ["true_class", "per_class"]


def per_example(loss_fn, logits, labels):
    return torch.stack([loss_fn(logits[i : i + 1], labels[i : i + 1]) for i in range(len(labels))])


def test_builtin_losses_are_registered():
    registry = load_registry()
    assert registry.loss("focal").build is build_focal
    assert registry.loss("cross_entropy").build is build_cross_entropy


# ---------------------------------------------------------------------------- focal


@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.185])
@pytest.mark.parametrize("alpha", [None, 1.0, [1.0, 1.0, 1.0, 1.0]])
def test_focal_is_cross_entropy_at_gamma_0_alpha_1(batch, smoothing, alpha, modulation):
    logits, labels = batch
    got = focal(gamma=0.0, alpha=alpha, smoothing=smoothing, modulation=modulation)(logits, labels)
    want = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
    assert torch.allclose(got, want, atol=1e-6, rtol=0), (got.item(), want.item())


# Two examples, three classes, probabilities p = (0.5, 0.3, 0.2) for both (logits = log p), labels
# 1 and 0, label smoothing s = 0.3 (targets (1 - s) one-hot + s / 3: (0.1, 0.8, 0.1) and (0.8, 0.1, 0.1)),
# gamma 2, alpha (1, 2, 3).
HAND_LOGITS = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
HAND_LABELS = torch.tensor([1, 0])
L5, L3, L2 = math.log(0.5), math.log(0.3), math.log(0.2)
CE = [-(0.1 * L5 + 0.8 * L3 + 0.1 * L2), -(0.8 * L5 + 0.1 * L3 + 0.1 * L2)]  # smoothed cross-entropy
HAND = {
    # alpha_y (1 - p_y)^2 * CE: y = 1 has p_y = 0.3 and alpha 2, y = 0 has p_y = 0.5 and alpha 1
    "true_class": (2 * 0.7 ** 2 * CE[0] + 1 * 0.5 ** 2 * CE[1]) / 2,
    # -sum_c alpha_c t_c (1 - p_c)^2 log p_c, with (1 - p)^2 = (0.25, 0.49, 0.64)
    "per_class": (-(1 * 0.1 * 0.25 * L5 + 2 * 0.8 * 0.49 * L3 + 3 * 0.1 * 0.64 * L2)
                  - (1 * 0.8 * 0.25 * L5 + 2 * 0.1 * 0.49 * L3 + 3 * 0.1 * 0.64 * L2)) / 2,
}


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_focal_by_hand(modulation):
    loss = focal(gamma=2.0, alpha=[1.0, 2.0, 3.0], smoothing=0.3, modulation=modulation, num_labels=3)
    got = loss(HAND_LOGITS, HAND_LABELS).item()
    assert math.isclose(got, HAND[modulation], rel_tol=1e-6), (modulation, got, HAND[modulation])
    assert math.isclose(HAND["true_class"], 0.6892664, rel_tol=1e-6)  # the numbers themselves, written out
    assert math.isclose(HAND["per_class"], 0.9179431, rel_tol=1e-6)


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_focal_without_smoothing_is_one_loss(batch, modulation):
    """With one-hot targets both forms are alpha_y (1 - p_y)^gamma (-log p_y)."""
    logits, labels = batch
    alpha = [0.5, 1.0, 2.0, 4.0]
    got = focal(gamma=2.0, alpha=alpha, modulation=modulation)(logits, labels)
    p = logits.float().softmax(-1).gather(1, labels[:, None]).squeeze(1)
    want = (torch.tensor(alpha)[labels] * (1 - p) ** 2 * -p.log()).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_the_two_modulations_differ_with_smoothing(batch):
    logits, labels = batch
    a = focal(gamma=2.0, smoothing=0.1, modulation="true_class")(logits, labels)
    b = focal(gamma=2.0, smoothing=0.1, modulation="per_class")(logits, labels)
    assert abs(a.item() - b.item()) > 1e-3


def test_focal_modulation_default_and_stored_options():
    """A spec stored before `modulation` existed trained per_class; a new spec gets true_class."""
    from runner.spec.compat import HASHING, STORED

    assert FocalOptions().modulation == "true_class"
    assert FocalOptions.model_validate({"gamma": 2.0}, context={STORED: True}).modulation == "per_class"
    assert FocalOptions.model_validate({"modulation": "true_class"}, context={STORED: True}).modulation == "true_class"
    assert "modulation" not in FocalOptions(modulation="per_class").model_dump(context={HASHING: True})
    assert FocalOptions().model_dump(context={HASHING: True})["modulation"] == "true_class"
    assert "1 - p_y" in FocalOptions.model_json_schema()["properties"]["modulation"]["description"]
    with pytest.raises(ValueError):
        FocalOptions(modulation="true-class")


def test_focal_is_not_cross_entropy_with_gamma(batch):
    logits, labels = batch
    assert not torch.allclose(focal(gamma=2.0)(logits, labels), F.cross_entropy(logits.float(), labels), atol=1e-3)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 2.97])
def test_focal_down_weights_easy_examples(gamma):
    labels = torch.tensor([0, 0, 0])
    logits = torch.tensor([
        [6.0, 0.0, 0.0, 0.0],   # easy: confidently right
        [0.5, 0.0, 0.0, 0.0],   # unsure
        [-2.0, 3.0, 0.0, 0.0],  # hard: confidently wrong
    ])
    ratio = per_example(focal(gamma=gamma), logits, labels) / F.cross_entropy(logits, labels, reduction="none")
    assert ratio[0] < ratio[1] < ratio[2] <= 1.0
    # the factor is (1 - p_true)^gamma when there is no smoothing
    p_true = logits.softmax(-1)[:, 0]
    assert torch.allclose(ratio, (1 - p_true) ** gamma, atol=1e-5)


def test_focal_ratio_tracks_confidence_on_random_logits(batch):
    logits, labels = batch
    ratio = per_example(focal(gamma=2.0), logits, labels) / F.cross_entropy(logits.float(), labels, reduction="none")
    p_true = logits.softmax(-1).gather(1, labels[:, None]).squeeze(1).float()
    order = torch.argsort(p_true)
    assert torch.all(ratio[order][1:] <= ratio[order][:-1] + 1e-6)  # more confident, smaller share


@pytest.mark.parametrize("modulation", MODULATIONS)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_alpha_scales_each_class(batch, gamma, modulation):
    logits, labels = batch
    alpha = [0.25, 1.0, 2.0, 4.0]
    plain = per_example(focal(gamma=gamma, modulation=modulation), logits, labels)
    weighted = per_example(focal(gamma=gamma, alpha=alpha, modulation=modulation), logits, labels)
    assert torch.allclose(weighted, plain * torch.tensor(alpha)[labels], atol=1e-6)
    assert torch.allclose(focal(gamma=gamma, alpha=alpha, modulation=modulation)(logits, labels), weighted.mean(),
                          atol=1e-6)


def test_true_class_alpha_is_the_labels_alpha_even_with_smoothing(batch):
    """true_class weights the whole smoothed term by alpha_y; per_class weighs each class's term by its own."""
    logits, labels = batch
    alpha = [0.25, 1.0, 2.0, 4.0]
    plain = per_example(focal(smoothing=0.2), logits, labels)
    weighted = per_example(focal(smoothing=0.2, alpha=alpha), logits, labels)
    assert torch.allclose(weighted, plain * torch.tensor(alpha)[labels], atol=1e-6)
    per = per_example(focal(smoothing=0.2, alpha=alpha, modulation="per_class"), logits, labels)
    per_plain = per_example(focal(smoothing=0.2, modulation="per_class"), logits, labels)
    assert not torch.allclose(per, per_plain * torch.tensor(alpha)[labels], atol=1e-3)


@pytest.mark.parametrize("modulation", MODULATIONS)
def test_focal_scalar_alpha_scales_the_whole_loss(batch, modulation):
    logits, labels = batch
    assert torch.allclose(focal(alpha=0.5, smoothing=0.1, modulation=modulation)(logits, labels),
                          0.5 * focal(smoothing=0.1, modulation=modulation)(logits, labels), atol=1e-6)


def test_focal_inverse_frequency_weights_rarer_classes_more(batch):
    counts = [300, 30, 150, 120]
    logits, labels = batch
    loss = focal(gamma=0.0, alpha="inverse_frequency", counts=counts)
    # one example per class, identical logits, so only alpha differs between them
    one = torch.zeros(1, C)
    w = torch.stack([loss(one, torch.tensor([c])) for c in range(C)]) / F.cross_entropy(one, torch.tensor([0]))
    assert torch.argmax(w).item() == 1 and torch.argmin(w).item() == 0
    assert list(torch.argsort(w).tolist()) == [0, 2, 3, 1]  # ordered by count, most common lightest
    expected = sum(counts) / (C * torch.tensor(counts, dtype=torch.float32))
    assert torch.allclose(w, expected, atol=1e-5)
    # mean weight 1 under the training distribution
    assert torch.isclose((w * torch.tensor(counts)).sum() / sum(counts), torch.tensor(1.0), atol=1e-5)


def test_focal_alpha_of_wrong_length_names_the_key():
    with pytest.raises(OptionError) as info:
        focal(alpha=[1.0, 2.0, 3.0])
    assert info.value.key == "alpha"
    assert "3 values" in info.value.message and "4 labels" in info.value.message


def test_focal_negative_alpha_is_refused():
    with pytest.raises(OptionError, match="non-negative"):
        focal(alpha=[1.0, -1.0, 1.0, 1.0])


def test_focal_options_model_rejects_bad_values():
    with pytest.raises(ValueError):
        FocalOptions(gamma=-1)
    with pytest.raises(ValueError):
        FocalOptions(alpha="inverse-frequency")
    with pytest.raises(ValueError):
        FocalOptions(gama=2.0)


def test_focal_loss_handles_half_precision_logits(batch):
    logits, labels = batch
    got = focal_loss(logits.half(), labels, gamma=0.0, alpha=None)
    assert got.dtype == torch.float32
    assert torch.allclose(got, F.cross_entropy(logits.half().float(), labels), atol=1e-6)


# ---------------------------------------------------------------------------- cross entropy


def cross_entropy(weights=None, smoothing=0.0, counts=None):
    ctx = LossContext(num_labels=C, class_counts=counts or [], label_smoothing=smoothing)
    return build_cross_entropy(ctx, CrossEntropyOptions(class_weights=weights))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_cross_entropy_matches_torch(batch, smoothing, weights):
    logits, labels = batch
    got = cross_entropy(weights, smoothing)(logits, labels)
    w = torch.tensor(weights) if weights is not None else None
    want = F.cross_entropy(logits.float(), labels, weight=w, label_smoothing=smoothing)
    assert torch.allclose(got, want, atol=1e-6)
    # and the same by hand: smoothed targets, class-weighted, normalised by the weights of the labels
    w = w if w is not None else torch.ones(C)
    logp = F.log_softmax(logits.float(), -1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    uniform = -(logp * w).sum(-1) / C
    per = (1 - smoothing) * w[labels] * nll + smoothing * uniform
    assert torch.allclose(got, per.sum() / w[labels].sum(), atol=1e-5)


def test_cross_entropy_inverse_frequency(batch):
    logits, labels = batch
    counts = [300, 30, 150, 120]
    w = sum(counts) / (C * torch.tensor(counts, dtype=torch.float32))
    got = cross_entropy("inverse_frequency", counts=counts)(logits, labels)
    assert torch.allclose(got, F.cross_entropy(logits.float(), labels, weight=w), atol=1e-6)


def test_cross_entropy_class_weights_of_wrong_length():
    with pytest.raises(OptionError) as info:
        cross_entropy([1.0, 2.0])
    assert info.value.key == "class_weights"


# ---------------------------------------------------------------------------- metrics


def one_hot_probs(preds, k):
    probs = np.full((len(preds), k), 0.1 / (k - 1))
    probs[np.arange(len(preds)), preds] = 0.9
    return probs


def test_accuracy_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    preds = np.array([0, 1, 1, 1, 2, 0, 3, 2])
    assert accuracy(one_hot_probs(preds, 4), labels) == pytest.approx(5 / 8)


def test_f1_macro_by_hand_with_a_class_never_predicted():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 0, 1, 1])  # class 2 is never predicted
    # class 0: tp 2, fp 1, fn 0 -> 4/5; class 1: tp 1, fp 2, fn 1 -> 2/5; class 2: tp 0 -> 0
    assert f1_macro(one_hot_probs(preds, 3), labels) == pytest.approx((0.8 + 0.4 + 0.0) / 3)
    assert accuracy(one_hot_probs(preds, 3), labels) == pytest.approx(3 / 6)


def test_f1_macro_counts_every_label_column():
    labels = np.array([0, 0, 1, 1])
    preds = np.array([0, 0, 1, 1])
    assert f1_macro(one_hot_probs(preds, 2), labels) == pytest.approx(1.0)
    # a label neither present nor predicted scores 0 (sklearn with labels=range(k))
    assert f1_macro(one_hot_probs(preds, 4), labels) == pytest.approx(0.5)


def test_metrics_are_registered_with_direction():
    registry = load_registry()
    assert registry.metric("accuracy").greater_is_better is True
    assert registry.metric("f1_macro").greater_is_better is True
    assert registry.metric("log_loss").greater_is_better is False
