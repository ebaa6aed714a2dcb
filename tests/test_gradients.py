import math

import pytest
import torch

from hf_unlearn.gradients import disruption_mask, ema_, global_norm, normalize_


def test_global_norm_spans_all_tensors():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]
    assert global_norm(grads).item() == pytest.approx(5.0)


def test_global_norm_is_fp32_for_bf16_inputs():
    grads = [torch.full((1000,), 0.01, dtype=torch.bfloat16)]
    assert global_norm(grads).dtype == torch.float32


def test_normalize_scales_to_sqrt_numel_in_place():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]  # norm 5, 4 elements
    out = normalize_(grads)
    # scale sqrt(4) / 5 = 0.4
    assert out is grads and torch.allclose(grads[0], torch.tensor([1.2, 0.0]))
    assert torch.allclose(grads[1], torch.tensor([[0.0], [1.6]]))
    assert global_norm(grads).item() == pytest.approx(math.sqrt(4))


def test_normalize_uses_given_norm_and_sign():
    grads = [torch.tensor([1.0, 1.0])]
    normalize_(grads, norm=torch.tensor(4.0), sign=-1.0)
    assert torch.allclose(grads[0], torch.tensor([-(2**0.5) / 4, -(2**0.5) / 4]))


def test_normalize_all_zero_stays_zero():
    grads = [torch.zeros(3), torch.zeros(2, 2)]
    normalize_(grads)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_disruption_mask_hand_case():
    unlearning = torch.tensor([1.0, -2.0, 3.0, -4.0, 0.0, 0.0, 5.0])
    retain = torch.tensor([0.5, -0.1, -1.0, 2.0, 0.0, 1.0, 0.0])
    expected = torch.tensor([True, True, False, False, True, False, False])
    assert torch.equal(disruption_mask(unlearning, retain), expected)


def test_disruption_mask_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        disruption_mask(torch.zeros(2), torch.zeros(3))


def test_ema_in_place():
    acc = [torch.tensor([1.0, 2.0])]
    out = ema_(acc, [torch.tensor([3.0, -2.0])], momentum=0.75)
    assert out is acc
    assert torch.allclose(acc[0], torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * 2 - 0.25 * 2]))
