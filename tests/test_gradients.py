import math

import pytest
import torch

from hf_unlearn.gradients import disruption_mask, ema_, global_norm, normalize


def test_global_norm_spans_all_tensors():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]
    assert global_norm(grads).item() == pytest.approx(5.0)


def test_global_norm_is_fp32_for_bf16_inputs():
    grads = [torch.full((1000,), 0.01, dtype=torch.bfloat16)]
    assert global_norm(grads).dtype == torch.float32


def test_normalize_scales_to_sqrt_numel():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]  # norm 5, 4 elements
    out = normalize(grads)
    # scale sqrt(4) / 5 = 0.4
    assert torch.allclose(out[0], torch.tensor([1.2, 0.0]))
    assert torch.allclose(out[1], torch.tensor([[0.0], [1.6]]))
    assert global_norm(out).item() == pytest.approx(math.sqrt(4))


def test_normalize_uses_given_norm():
    out = normalize([torch.tensor([1.0, 1.0])], norm=torch.tensor(4.0))
    assert torch.allclose(out[0], torch.tensor([2**0.5 / 4, 2**0.5 / 4]))


def test_normalize_all_zero_stays_zero():
    out = normalize([torch.zeros(3), torch.zeros(2, 2)])
    assert all(torch.equal(o, torch.zeros_like(o)) for o in out)


def test_disruption_mask_hand_case():
    unlearning = torch.tensor([1.0, -2.0, 3.0, -4.0, 0.0, 0.0, 5.0])
    retain = torch.tensor([0.5, -0.1, -1.0, 2.0, 0.0, 1.0, 0.0])
    expected = torch.tensor([True, True, False, False, True, False, False])
    assert torch.equal(disruption_mask(unlearning, retain), expected)


def test_disruption_mask_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        disruption_mask(torch.zeros(2), torch.zeros(3))


def test_ema_in_place():
    acc = torch.tensor([1.0, 2.0])
    out = ema_(acc, torch.tensor([3.0, -2.0]), momentum=0.75)
    assert out is acc
    assert torch.allclose(acc, torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * 2 - 0.25 * 2]))
