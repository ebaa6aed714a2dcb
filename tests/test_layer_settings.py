"""Layer settings (RMU's rmu_layer, Circuit Breakers' cb_layers, CIR's loss_layers and retain_layer): defaults derived
from the model's depth, and explicit values checked against it when the trainer is built, before any step."""

import pytest
import torch
from conftest import tiny_llama, unlearn_config
from peft import LoraConfig

from hf_unlearn import CIRConfig, CircuitBreakersConfig, RMUConfig, UnlearnTrainer
from hf_unlearn.gradients import loss_gradients
from hf_unlearn.methods.cir import default_cir_layers
from hf_unlearn.methods.circuit_breakers import default_cb_layers
from hf_unlearn.methods.rmu import default_rmu_layer
from hf_unlearn.targets import depth_fraction

# Settings for tiny models, none of them a layer. CIR: one step per epoch (24 texts), so its second step takes the
# collapsed update and the retain step; no disruption budget, which would need an evaluation set.
TINY = {
    "rmu": (RMUConfig, dict(learning_rate=1e-3, retaining_rate=10.0)),
    "circuit_breakers": (CircuitBreakersConfig, dict(learning_rate=1e-3)),
    "cir": (CIRConfig, dict(act_components=2, grad_components=2, pca_niter=4, step_norm=0.5, retaining_rate=1e-3,
                            per_device_train_batch_size=24, disruption_budget=None, eval_strategy="no", eval_on_start=False)),
}  # fmt: skip


def trainer_for(model, tokenizer, forget, retain, tmp_path, method, peft_config=None, **layers):
    config_class, settings = TINY[method]
    args = unlearn_config(tmp_path, config_class=config_class, max_steps=2, **settings, **layers)
    return UnlearnTrainer(model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer, peft_config=peft_config)


# --- the defaults, as functions of the depth ------------------------------------------------------


def test_depth_fraction_rounds_half_up():
    assert [depth_fraction(depth, 1, 2) for depth in (1, 2, 3, 5)] == [1, 1, 2, 3]
    assert depth_fraction(30, 7, 30) == 7 and depth_fraction(0, 7, 30) == 0


def test_defaults_on_smollm2_depth_are_the_former_fixed_values():
    assert default_rmu_layer(30) == 7
    assert default_cb_layers(30) == [10, 20]
    assert default_cir_layers(30) == (list(range(6, 12)), 12)


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 12, 24, 32])
def test_defaults_fit_every_depth(depth):
    assert 0 <= default_rmu_layer(depth) < depth
    assert default_cb_layers(depth) and all(1 <= i <= depth for i in default_cb_layers(depth)), "never the embeddings"
    loss_layers, retain_layer = default_cir_layers(depth)
    assert 1 <= retain_layer <= depth
    assert loss_layers and all(0 <= i < retain_layer for i in loss_layers), "every loss layer reaches the retained output"


def test_loss_gradients_are_zero_for_leaves_the_loss_does_not_reach():
    used, unused = torch.tensor([1.0, 2.0], requires_grad=True), torch.ones(3, requires_grad=True)
    assert [g.tolist() for g in loss_gradients((used**2).sum(), [used, unused])] == [[2.0, 4.0], [0.0, 0.0, 0.0]]
    assert [g.tolist() for g in loss_gradients(torch.tensor(1.0), [used])] == [[0.0, 0.0]], "a loss reaching none of them"


# --- the defaults train models of any depth -------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 5])
@pytest.mark.parametrize("method", list(TINY))
def test_default_layers_train_any_depth(tokenizer, forget_dataset, retain_dataset, tmp_path, method, depth):
    """Also where a representation loss reads a layer below some trained ones (Circuit Breakers' [1] of 2 layers:
    block 1's weights get no rerouting gradient, which autograd once refused instead of taking as zero)."""
    model = tiny_llama(len(tokenizer), num_hidden_layers=depth)
    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method)
    expected = {
        "rmu": {"rmu_layer": default_rmu_layer(depth)},
        "circuit_breakers": {"cb_layers": default_cb_layers(depth)},
        "cir": dict(zip(("loss_layers", "retain_layer"), default_cir_layers(depth))),
    }[method]
    assert trainer.objective.derived == expected
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert expected.items() <= trainer.unlearning_info().settings.items(), "the derived layers are recorded with the settings"


def test_explicit_layers_are_used_and_not_derived(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "cir", loss_layers=[1], retain_layer=2)
    assert trainer.objective.derived == {}
    assert (trainer.objective.loss_layers, trainer.objective.retain_layer) == ([1], 2)
    assert {"loss_layers": [1], "retain_layer": 2}.items() <= trainer.method_settings().items()


# --- explicit layers the model lacks are refused when the trainer is built ------------------------

OUT_OF_RANGE = [
    ("rmu", {"rmu_layer": 2}, r"rmu_layer=2 does not fit this model \(2 decoder layers\): use layers 0 to 1"),
    ("circuit_breakers", {"cb_layers": [1, 3]}, r"cb_layers=\[1, 3\] does not fit this model \(2 decoder layers\): use layers 0 to 2"),
    ("circuit_breakers", {"cb_layers": [-1]}, r"cb_layers=\[-1\] does not fit"),
    ("circuit_breakers", {"cb_layers": []}, r"cb_layers=\[\] does not fit"),
    ("cir", {"loss_layers": [0, 2]}, r"loss_layers=\[0, 2\] does not fit this model \(2 decoder layers\): use layers 0 to 1"),
    ("cir", {"loss_layers": []}, r"loss_layers=\[\] does not fit"),
    ("cir", {"retain_layer": 3}, r"retain_layer=3 does not fit this model \(2 decoder layers\): use layers 1 to 2"),
]


@pytest.mark.parametrize("method, layers, message", OUT_OF_RANGE)
def test_out_of_range_layers_are_refused_at_construction(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, layers, message):
    with pytest.raises(ValueError, match=message):
        trainer_for(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, **layers)


@pytest.mark.parametrize("method, layers", [("rmu", {"rmu_layer": 2}), ("circuit_breakers", {"cb_layers": [3]})])
def test_out_of_range_layers_are_refused_for_an_adapter_too(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, layers):
    # An adapter trains the modules it wraps, so the method's target_modules (which once checked rmu_layer) never run.
    lora = LoraConfig(r=2, target_modules=["down_proj"])
    with pytest.raises(ValueError, match=f"{next(iter(layers))}=.* does not fit this model"):
        trainer_for(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, peft_config=lora, **layers)


# --- CIR's retain term below a loss layer ---------------------------------------------------------


def test_cir_retain_layer_below_a_loss_layer_trains(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """hidden_states[1] is block 0's output, which block 1's trained MLP does not reach: its retain gradient is zero
    (autograd once refused it: "The differentiated Tensor at index 3 appears to not have been used in the graph")."""
    initial = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer = trainer_for(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "cir", loss_layers=[0, 1], retain_layer=1)
    assert any(name.startswith("model.layers.1.") for name in trainer.procedure.target_names)
    trainer.train()
    retain_losses = [entry["retain_loss"] for entry in trainer.state.log_history if "retain_loss" in entry]
    assert len(retain_losses) == 1 and torch.isfinite(torch.tensor(retain_losses)).all(), "the second step took the retain step"
    moved = {name for name in trainer.procedure.target_names if not torch.equal(model.get_parameter(name), initial[name])}
    assert moved == set(trainer.procedure.target_names), "the layer above the retained output trains too"
