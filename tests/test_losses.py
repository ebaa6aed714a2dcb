import math

import pytest
import torch

from hf_unlearn.losses import (
    IGNORE_INDEX,
    available_losses,
    correct_logit_minus_avg,
    cross_entropy,
    get_loss,
    neg_cross_entropy,
    neg_entropy,
)

# One sequence of 3 tokens over a vocabulary of 3: positions 0 and 1 predict tokens 1 and 2.
LOGITS = torch.tensor([[[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
LABELS = torch.tensor([[0, 1, 0]])


def log_softmax(row):
    log_z = math.log(sum(math.exp(x) for x in row))
    return [x - log_z for x in row]


def test_cross_entropy_by_hand():
    # position 0 -> target 1, position 1 -> target 0 (the last position predicts nothing)
    expected = -(log_softmax([0.0, 1.0, 0.0])[1] + log_softmax([2.0, 0.0, 0.0])[0]) / 2
    assert cross_entropy(LOGITS, LABELS).item() == pytest.approx(expected, rel=1e-6)
    assert neg_cross_entropy(LOGITS, LABELS).item() == pytest.approx(-expected, rel=1e-6)


def test_padding_is_ignored():
    labels = torch.tensor([[0, 1, IGNORE_INDEX]])
    expected = -log_softmax([0.0, 1.0, 0.0])[1]  # only position 0 has a real target
    assert cross_entropy(LOGITS, labels).item() == pytest.approx(expected, rel=1e-6)
    changed = LOGITS.clone()
    changed[0, 1] = torch.tensor([-5.0, 7.0, 3.0])  # predicts the padded target: must not matter
    assert cross_entropy(changed, labels).item() == pytest.approx(expected, rel=1e-6)


def test_neg_entropy_by_hand():
    def entropy(row):
        logp = log_softmax(row)
        return -sum(math.exp(lp) * lp for lp in logp)

    expected = -(entropy([0.0, 1.0, 0.0]) + entropy([2.0, 0.0, 0.0])) / 2
    assert neg_entropy(LOGITS, LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_correct_logit_minus_avg_clips_at_zero():
    # position 0: 1 - 1/3 = 2/3; position 1: target 0 has logit 2, mean 2/3 -> 4/3
    assert correct_logit_minus_avg(LOGITS, LABELS).item() == pytest.approx((2 / 3 + 4 / 3) / 2, rel=1e-6)
    below = torch.tensor([[[5.0, 0.0, 5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # target 1 below the mean
    assert correct_logit_minus_avg(below, torch.tensor([[0, 1, IGNORE_INDEX]])).item() == 0.0


def test_no_target_tokens_gives_zero_with_graph():
    logits = torch.randn(1, 2, 3, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 2), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_registry_lists_losses_on_unknown_name():
    assert {"neg_cross_entropy", "neg_entropy", "correct_logit_minus_avg"} <= set(available_losses())
    assert get_loss("neg_entropy") is neg_entropy
    with pytest.raises(ValueError, match="available losses: .*neg_cross_entropy"):
        get_loss("nope")


def test_cross_entropy_matches_transformers_causal_lm_loss():
    """Prompt positions and padding ignored, value and gradient as the transformers loss every HF model uses."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :3] = IGNORE_INDEX  # a prompt
    labels[2, 5:] = IGNORE_INDEX  # padding
    ours = cross_entropy(logits, labels)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    theirs = ForCausalLMLoss(logits, labels, vocab_size=11)
    (theirs_grad,) = torch.autograd.grad(theirs, logits)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert torch.allclose(ours_grad, theirs_grad, atol=1e-7)
