"""The baselines: their losses against the formulas, training through UnlearnTrainer, and composable components."""

import ast
import copy
import inspect
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_llama, unlearn_config, write_local_files
from peft import LoraConfig

import hf_unlearn
from hf_unlearn import (
    CIRConfig,
    CircuitBreakersConfig,
    GradDiffConfig,
    TARConfig,
    UnlearnConfig,
    UnlearnTrainer,
    available_methods,
    get_method,
)
from hf_unlearn.gradients import top_fraction_mask
from hf_unlearn.losses import (
    cross_entropy,
    npo_loss,
    representation_distance,
    rerouting_loss,
    sequence_logprobs,
    simnpo_loss,
    steering_loss,
)
from hf_unlearn.methods.rmu import control_vector
from hf_unlearn.unlearn_config import FullUpdateArguments

# --- losses against their formulas ---------------------------------------------------------------


def test_sequence_logprobs_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0], [0.0, 0.0]]])  # p(1)=3/4 at 0, p(0)=3/4 at 1
    logprobs, lengths = sequence_logprobs(logits, torch.tensor([[-100, 1, 0]]))
    assert logprobs.item() == pytest.approx(2 * math.log(0.75)) and lengths.tolist() == [2]
    logprobs, lengths = sequence_logprobs(logits, torch.tensor([[-100, 1, -100]]))
    assert logprobs.item() == pytest.approx(math.log(0.75)) and lengths.tolist() == [1]


def test_npo_loss_by_hand():
    beta, logp, ref = 0.5, torch.tensor([-2.0, -4.0]), torch.tensor([-3.0, -3.0])
    expected = [-(2 / beta) * math.log(1 / (1 + math.exp(beta * (lp - r)))) for lp, r in zip(logp.tolist(), ref.tolist())]
    assert npo_loss(logp, ref, beta).item() == pytest.approx(sum(expected) / 2)
    assert npo_loss(ref, ref, beta).item() == pytest.approx((2 / beta) * math.log(2))  # pi = pi_ref


def test_simnpo_loss_by_hand():
    beta, gamma = 2.5, 0.3
    logp, lengths = torch.tensor([-6.0, -1.0]), torch.tensor([3, 2])
    expected = [
        -(2 / beta) * math.log(1 / (1 + math.exp(beta / n * lp + gamma))) for lp, n in zip(logp.tolist(), lengths.tolist())
    ]
    assert simnpo_loss(logp, lengths, beta, gamma).item() == pytest.approx(sum(expected) / 2)


def test_rmu_control_vector_direction_and_scale():
    control = control_vector(16, 6.5, seed=3)
    assert control.norm().item() == pytest.approx(6.5)
    assert (control >= 0).all(), "u is uniform in [0, 1)^d, normalised"
    assert torch.equal(control, control_vector(16, 6.5, seed=3)) and not torch.equal(control, control_vector(16, 6.5, seed=4))
    hidden = torch.zeros(1, 2, 16)
    # Padding (mask 0) is ignored: MSE of zeros to the control is mean(control^2) = 6.5^2 / 16.
    assert steering_loss(hidden, control, torch.tensor([[1, 0]])).item() == pytest.approx(6.5**2 / 16)


def test_rerouting_and_representation_distance_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    original = torch.tensor([[[1.0, 1.0], [0.0, -1.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # cosines: 1/sqrt(2) and -1 (relu -> 0); the third token is padding
    assert rerouting_loss(hidden, original, mask).item() == pytest.approx((1 / math.sqrt(2) + 0) / 2)
    assert representation_distance(hidden, original, mask).item() == pytest.approx((1 + 3) / 2)
    assert representation_distance(hidden, original, mask, squared=True).item() == pytest.approx((1 + 9) / 2)


def test_top_fraction_mask_by_hand():
    scores = [torch.tensor([[0.5, 3.0], [1.0, 0.0]]), torch.tensor([2.0, 0.1])]
    masks = top_fraction_mask(scores, 0.5)  # 3 of 6: the scores 3.0, 2.0, 1.0
    assert masks[0].tolist() == [[False, True], [True, False]] and masks[1].tolist() == [True, False]


# --- every method trains through UnlearnTrainer ----------------------------------------------------

# Settings for a 2-layer model; AdamW at a visible learning rate for the loss-based baselines.
# The settings a method needs on the tiny model beyond its defaults, from the registry: optimizer-driven methods get
# a learning rate at which 3 steps move its weights; the methods below, a few more. A method registered before the
# tests are collected (tests/conftest.py's HF_UNLEARN_TEST_METHODS: test_a_method_of_ones_own_passes_the_method_tests)
# runs at its defaults. CIR's statistics epoch needs settings of its own: test_cir.py.
TINY_OVERRIDES = {"rmu": {"rmu_layer": 1, "retaining_rate": 10.0}, "circuit_breakers": {"cb_layers": [1, 2]}}
TESTED_ELSEWHERE = {"cir"}


def tiny_settings(method: str) -> tuple[type, dict]:
    config = get_method(method).config
    rate = {} if issubclass(config, FullUpdateArguments) else {"learning_rate": 1e-3}
    return config, {**rate, **TINY_OVERRIDES.get(method, {})}


TINY = {method: tiny_settings(method) for method in available_methods() if method not in TESTED_ELSEWHERE}
EXPECTED_TARGETS = {
    "mudman": {f"model.layers.{i}.mlp.gate_proj.weight" for i in (0, 1)},
    "tar": {f"model.layers.{i}.mlp.gate_proj.weight" for i in (0, 1)},
    "rmu": {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)},  # layers rmu_layer-2 .. rmu_layer
}
ALL_LINEAR = {"graddiff", "npo", "simnpo", "circuit_breakers"}


def train(model, tokenizer, forget, retain, tmp_path, method, max_steps=3, peft_config=None, **overrides):
    config_class, settings = TINY[method]
    args = unlearn_config(tmp_path, max_steps=max_steps, config_class=config_class, **{**settings, **overrides})
    trainer = UnlearnTrainer(
        model, args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer, peft_config=peft_config
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("method", list(TINY))
def test_method_trains_only_its_weights(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method):
    initial = copy.deepcopy(model.state_dict())
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method)
    logs = [entry for entry in trainer.state.log_history if "unlearning_loss" in entry]
    assert len(logs) == 3 and all(math.isfinite(v) for entry in logs for v in entry.values() if isinstance(v, float))
    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, initial[name])}
    all_linear = {name for name in initial if name.endswith("proj.weight")}
    # A method of one's own: exactly the weights it chose moved.
    expected = all_linear if method in ALL_LINEAR else EXPECTED_TARGETS.get(method, set(trainer.procedure.target_names))
    assert changed == expected and changed
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_a_method_of_ones_own_passes_the_method_tests(tmp_path):
    """A method is one file: defined in a package of one's own, registered on import, it runs through every test here
    that reads the registry, with no edit of the tests."""
    package = tmp_path / "my_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gradient_ascent.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass, field

        from hf_unlearn import Objective, UnlearnConfig, register_method
        from hf_unlearn.components import ForgetLossArguments, OptimizerArguments, OptimizerUpdate, RateArguments


        @dataclass
        class GradientAscentConfig(ForgetLossArguments, RateArguments, OptimizerArguments, UnlearnConfig):
            method: str = field(default="gradient_ascent", metadata={"help": "Unlearning method (registry name)."})


        @register_method("gradient_ascent", config=GradientAscentConfig, procedure=OptimizerUpdate)
        class GradientAscent(Objective):
            reads = ("unlearning_loss", "unlearning_rate")

            def loss_weights(self, step, max_steps):
                return 0.0, self.args.unlearning_rate  # no retain term
    '''))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(tmp_path), "HF_UNLEARN_TEST_METHODS": "my_methods.gradient_ascent", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(Path(__file__)), "-k", "gradient_ascent"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).parent)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    passed = set(re.findall(r"::(\w+)\[gradient_ascent\] PASSED", done.stdout))
    assert passed == {"test_method_trains_only_its_weights", "test_a_method_that_does_not_mask_holds_no_retain_ema",
                      "test_each_objective_declares_every_setting_it_reads"}, done.stdout[-3000:]


def test_reference_holds_trained_tensors_only(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "npo", target_modules=["gate_proj"])
    originals = trainer.procedure.state_dict()["original"]
    assert [o.shape for o in originals] == [model.get_parameter(n).shape for n in trainer.procedure.target_names]
    assert len(originals) == 2, "copies of the two trained tensors, not of the model"


def test_npo_reference_is_the_model_before_unlearning(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """At the first step NPO's loss is (2/beta) log 2 exactly: pi = pi_ref."""
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "npo", max_steps=1)
    first = next(entry for entry in trainer.state.log_history if "unlearning_loss" in entry)
    assert first["unlearning_loss"] == pytest.approx((2 / 0.1) * math.log(2), rel=1e-5)


def test_circuit_breakers_with_lora_uses_the_disabled_adapter(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    initial = copy.deepcopy(model.state_dict())
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "circuit_breakers", peft_config=lora)
    assert trainer.procedure.reference.peft and trainer.procedure.reference.original is None, "no copy of any weight: the adapter is disabled"
    assert all("lora_" in name for name in trainer.procedure.target_names)
    base = trainer.model.get_base_model().state_dict()
    unchanged = {n.replace(".base_layer", ""): t for n, t in base.items() if "lora_" not in n}
    assert unchanged.keys() == initial.keys()
    assert all(torch.equal(unchanged[n], t) for n, t in initial.items()), "the base weights never change"
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in trainer.model.named_parameters() if "lora_B" in n)


def test_circuit_breakers_schedule():
    from hf_unlearn.methods.circuit_breakers import CircuitBreakers

    method = CircuitBreakers(CircuitBreakersConfig(output_dir="unused", cb_alpha=10.0))
    assert method.loss_weights(0, 100) == (0.0, 10.0)
    assert method.loss_weights(100, 100) == (5.0, 5.0)  # t = T: retain alpha/2, forget alpha/2


def test_tar_is_mudman_with_the_switches_off(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    twin = copy.deepcopy(model)
    tar = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "tar", "tar", adv_decay=0.8, fork_every_n_loops=2)
    switches = dict(
        unlearning_loss="neg_entropy", disruption_masking=False, normalize_unlearning_grad=False, retain_momentum=0.0,
        unlearning_rate=TARConfig.unlearning_rate, retain_representation_weight=TARConfig.retain_representation_weight,
    )  # fmt: skip
    mudman = train(twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "mud", "mudman", adv_decay=0.8, fork_every_n_loops=2, **switches)
    assert tar.objective.method_name == "tar" and mudman.objective.method_name == "mudman"
    for name in tar.procedure.target_names:
        assert torch.equal(model.get_parameter(name), twin.get_parameter(name)), name
    # The representation term is really on: without it the result differs.
    third = copy.deepcopy(twin)
    train(third, tokenizer, forget_dataset, retain_dataset, tmp_path / "x", "tar", adv_decay=0.8, fork_every_n_loops=2, retain_representation_weight=0.0)
    assert not torch.equal(third.get_parameter(tar.procedure.target_names[0]), model.get_parameter(tar.procedure.target_names[0]))


# --- components that compose with any method ------------------------------------------------------


def test_graddiff_with_disruption_masking(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    """With SGD at lr 1 the update is readable: outside the mask only the retain gradient moves a weight."""
    # retain_momentum > 0 keeps the retain direction (an EMA) in a buffer the test can read.
    plain_sgd = dict(optim="sgd", learning_rate=1.0, max_grad_norm=0.0, unlearning_rate=0.05, retaining_rate=0.05, retain_momentum=0.5)
    twin = copy.deepcopy(model)
    names = ["model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate_proj.weight"]
    before = [model.get_parameter(n).detach().clone() for n in names]
    masked = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "m", "graddiff", max_steps=1,
                   disruption_masking=True, target_modules=["gate_proj"], **plain_sgd)  # fmt: skip
    unmasked = train(twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "u", "graddiff", max_steps=1,
                     target_modules=["gate_proj"], **plain_sgd)  # fmt: skip
    for name, b, acc in zip(names, before, masked.procedure.retain.ema):
        forget_on = -(model.get_parameter(name) - b) / 0.05 - acc  # the forget gradient that was applied
        forget_off = -(twin.get_parameter(name) - b) / 0.05 - acc
        opposite = torch.sign(forget_off) != torch.sign(acc)
        assert opposite.any() and forget_on[opposite].abs().max() < 1e-4
        assert torch.allclose(forget_on[~opposite], forget_off[~opposite], atol=1e-4)
    assert masked.state.log_history[0]["mask_kept_fraction"] < 1 == unmasked.state.log_history[0]["mask_kept_fraction"]


def test_npo_with_meta_learning_adversary(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    twin = copy.deepcopy(model)
    with_adversary = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path / "a", "npo", meta_learning=True, adv_lr=0.5)
    plain = train(twin, tokenizer, forget_dataset, retain_dataset, tmp_path / "b", "npo")
    assert with_adversary.procedure.adversary is not None and plain.procedure.adversary is None
    assert "adversary_forget_loss" in with_adversary.state.log_history[0]
    name = with_adversary.procedure.target_names[0]
    assert not torch.equal(model.get_parameter(name), twin.get_parameter(name))


@pytest.mark.parametrize("method", ["graddiff", "mudman"])
def test_wagle_mask_selects_weights_and_only_those_change(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method):
    initial = copy.deepcopy(model.state_dict())
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, wagle_fraction=0.1,
                    target_modules=["gate_proj"], disruption_masking=True)  # fmt: skip
    masks = trainer.procedure.wagle.mask
    total = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == round(0.1 * total)
    for name, mask in zip(trainer.procedure.target_names, masks):
        moved = model.get_parameter(name) != initial[name]
        assert not moved[~mask].any(), "weights outside the WAGLE mask never change"
        assert moved[mask].float().mean() > 0.5


def test_unknown_method_lists_the_available_ones(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    with pytest.raises(ValueError, match="available methods: " + ", ".join(available_methods())):
        UnlearnTrainer(model, UnlearnConfig(output_dir=str(tmp_path), method="rmu2"), forget_dataset=forget_dataset, retain_dataset=retain_dataset)


def test_method_needs_its_config_class(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    with pytest.raises(ValueError, match="method='npo' is configured by NPOConfig, got UnlearnConfig"):
        UnlearnTrainer(model, UnlearnConfig(output_dir=str(tmp_path), method="npo"), forget_dataset=forget_dataset, retain_dataset=retain_dataset)
    with pytest.raises(ValueError, match=r"args is the bare UnlearnConfig, which names no method: build a method's config, e\.g\. hf_unlearn\.MUDMANConfig"):
        UnlearnTrainer(model, UnlearnConfig(output_dir=str(tmp_path)), forget_dataset=forget_dataset, retain_dataset=retain_dataset)


def test_without_args_the_trainer_runs_mudman(model, tokenizer, forget_dataset, retain_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as Trainer's own default, it writes under the working directory
    trainer = UnlearnTrainer(model, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
    assert type(trainer.args).__name__ == "MUDMANConfig" and trainer.args.output_dir == "unlearn_output"


def test_compute_loss_on_a_paired_batch_is_the_method_objective(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer = UnlearnTrainer(
        model, unlearn_config(tmp_path, config_class=GradDiffConfig, unlearning_rate=0.5, retaining_rate=2.0),
        forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer,
    )  # fmt: skip
    forget, retain = next(iter(trainer.get_train_dataloader())), trainer.retain_stream.batch(0)
    loss = trainer.compute_loss(model, {"forget": forget, "retain": retain})

    def ce(batch):
        return cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])

    expected = 2.0 * ce(retain) - 0.5 * ce(forget)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# --- state: each component holds only what it reads --------------------------------------------------


# From the registry: every method whose defaults switch neither Disruption Masking nor retain momentum on.
NOT_MASKING = [m for m in available_methods() if not getattr(get_method(m).config, "disruption_masking", False) and not getattr(get_method(m).config, "retain_momentum", 0.0)]


@pytest.mark.parametrize("method", NOT_MASKING)
def test_a_method_that_does_not_mask_holds_no_retain_ema(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method):
    """No Disruption Masking and no retain momentum: no fp32 copy of the target weights for a retain EMA
    (~28 GB for an 8B model's linear layers)."""
    if method == "cir":
        args = unlearn_config(tmp_path, config_class=CIRConfig, max_steps=4, loss_layers=[0, 1], retain_layer=2, act_components=2,
                              grad_components=2, pca_niter=4, disruption_budget=None, eval_strategy="no", eval_on_start=False,
                              per_device_train_batch_size=8)  # fmt: skip
        trainer = UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
        trainer.train()
    else:
        trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, method, max_steps=2)
    state = trainer.procedure.state_dict()
    assert state.get("retain_ema") is None
    tensors = [t for value in state.values() for t in (value if isinstance(value, list) else [value]) if isinstance(t, torch.Tensor)]
    # What remains: the original values of the trained tensors, for methods that compare with the original model
    # (NPO, RMU, Circuit Breakers, CIR; TAR's representation anchor), and TAR's adversary.
    targets = len(trainer.procedure.target_names)
    expected = targets * (trainer.procedure.reference is not None) + targets * (method == "tar")
    assert len(tensors) == expected


def test_masking_and_momentum_keep_one_ema_per_target(model, tokenizer, forget_dataset, retain_dataset, tmp_path):
    trainer = train(model, tokenizer, forget_dataset, retain_dataset, tmp_path, "mudman", max_steps=2)
    state = trainer.procedure.state_dict()
    assert [t.dtype for t in state["retain_ema"]] == [torch.float32] * len(trainer.procedure.target_names)
    assert state["original"] is None, "MUDMAN never compares with the original model: no copy of it"


def test_the_readme_example_method(tokenizer, forget_dataset, retain_dataset, tmp_path, monkeypatch):
    """README's "Adding a method" is a complete method file: it registers, configures and trains."""
    from hf_unlearn import registry

    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))  # the example's method stays in this test
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Adding a method") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 3)]
    namespace: dict = {}
    exec(compile(code, "README.md (Adding a method)", "exec"), namespace)
    config_class = namespace["MaskedNPOConfig"]
    args = unlearn_config(tmp_path, config_class=config_class, max_steps=2, learning_rate=1e-3)
    assert args.method == "masked_npo" and args.disruption_masking
    model = tiny_llama(len(tokenizer))
    trainer = UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "mask_kept_fraction" in entry]
    assert 0 < logged[0]["mask_kept_fraction"] < 1, "Disruption Masking ran"
    assert isinstance(trainer.objective, namespace["MaskedNPO"]) and trainer.procedure.reference.original is not None

    # The same text as a file of hf_unlearn/methods/ (in a copy of the package) is all the command line needs:
    # a sweep searches the space its registration carries, and the card cites its paper.
    package = tmp_path / "package"
    shutil.copytree(Path(hf_unlearn.__file__).parent, package / "hf_unlearn", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "hf_unlearn" / "methods" / "masked_npo.py").write_text(code)
    with (package / "hf_unlearn" / "methods" / "__init__.py").open("a") as methods:
        methods.write("from . import masked_npo  # noqa: F401, E402\n")  # its line in the list of built-in methods
    model_dir, data = write_local_files(tmp_path)
    data_flags = ["--forget_source", data.forget_source, "--retain_source", data.retain_source, "--chunk_length", "16"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(package), "OMP_NUM_THREADS": "1"}

    def hf_unlearn_command(*arguments: str) -> None:
        done = subprocess.run([sys.executable, "-m", "hf_unlearn.cli", *arguments], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

    hf_unlearn_command("sweep", "--method", "masked_npo", "--model_name_or_path", str(model_dir), *data_flags, "--n_trials", "1",
                       "--pass_budget", "4", "--eval_steps", "2", "--batch_size", "4", "--attack_steps", "2", "--disruption_budget", "10",
                       "--output_dir", str(tmp_path / "sweep"))  # fmt: skip
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    registered = registry.get_method("masked_npo")
    assert {name: best[name] for name in registered.search_space} == {n: r["published"] for n, r in registered.search_space.items()}
    hf_unlearn_command("unlearn", "--method", "masked_npo", "--model_name_or_path", str(model_dir), *data_flags, "--max_steps", "1",
                       "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "unlearned"), "--report_to", "none")  # fmt: skip
    card = (tmp_path / "unlearned" / "README.md").read_text()
    assert registered.citation.bibtex() in card and "masked_npo" in card


def settings_read(procedure: type, objective: type) -> set[str]:
    """Every setting the objective's code reads (``args.X``, ``self.args.X``, ``config = self.args; config.X``) in the
    methods the procedure calls (``self.objective.X``), followed through ``self.Y(...)`` calls."""
    read: set[str] = set()
    _reads(objective, _reads(procedure, None, read), read)
    return read


def _reads(cls: type, entry_points: set[str] | None, read: set[str]) -> set[str]:
    """Add to ``read`` the settings the objective ``cls`` reads from ``entry_points`` (None: all its methods; a procedure
    then, whose own reads are not added); return the objective's methods it calls."""
    functions = dict(inspect.getmembers(cls, inspect.isfunction))
    todo, seen, objective_calls = list(functions if entry_points is None else entry_points), set(), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(functions[name])))
        aliases = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_self_attribute(node.value, "args")
                   for target in node.targets if isinstance(target, ast.Name)}  # fmt: skip
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                todo.append(node.attr)
            elif entry_points is not None and ((isinstance(node.value, ast.Name) and node.value.id in aliases) or _is_self_attribute(node.value, "args")):
                read.add(node.attr)
            elif _is_self_attribute(node.value, "objective"):
                objective_calls.add(node.attr)
    return objective_calls


def _is_self_attribute(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and isinstance(node.value, ast.Name) and node.value.id == "self"


@pytest.mark.parametrize("method", available_methods())
def test_each_objective_declares_every_setting_it_reads(method):
    """``Objective.reads`` is what registration checks the config against: it must name everything the code reads."""
    spec = get_method(method)
    undeclared = settings_read(spec.procedure, spec.objective) - set(spec.objective.reads)
    assert not undeclared, f"{spec.objective.__name__} reads {sorted(undeclared)}: add them to its `reads`"


def test_a_config_lacking_a_setting_its_method_reads_fails_at_registration():
    """The default objective reads unlearning_rate / retaining_rate (``loss_weights``) and unlearning_loss; a config
    without the components that hold them used to fail at the run's first step."""
    from dataclasses import dataclass

    from hf_unlearn.components import OptimizerArguments, OptimizerUpdate, TransformArguments
    from hf_unlearn.registry import _METHODS

    @dataclass
    class RatelessConfig(OptimizerArguments, TransformArguments, hf_unlearn.UnlearnConfig):
        method: str = "rateless"

    with pytest.raises(TypeError, match=r"method 'rateless': Rateless reads args.unlearning_loss, args.retaining_rate, args.unlearning_rate, which RatelessConfig lacks"):
        hf_unlearn.register_method("rateless", config=RatelessConfig, procedure=OptimizerUpdate)(type("Rateless", (hf_unlearn.Objective,), {}))
    assert "rateless" not in _METHODS
    # A hook objectives no longer have would be ignored silently: refused, naming what replaces it.
    with_callbacks = type("WithCallbacks", (hf_unlearn.Objective,), {"callbacks": lambda self: []})
    with pytest.raises(TypeError, match="Objective.callbacks is no longer called; pass TrainerCallbacks"):
        hf_unlearn.register_method("with_callbacks", config=RatelessConfig, procedure=OptimizerUpdate)(with_callbacks)


def test_a_search_space_without_its_step_size_setting_is_refused_at_registration():
    """Benchmarks move a method's step-size range alone (``step_size_setting``): a space without it names the setting."""
    from hf_unlearn.components import OptimizerUpdate
    from hf_unlearn.registry import _METHODS, around

    space = {"retaining_rate": around(1.0)}  # GraddiffConfig has it, but not the default step size's range
    with pytest.raises(ValueError, match=r"method 'stepless': step_size_setting='learning_rate' is not in its search space \['retaining_rate'\]"):
        hf_unlearn.register_method("stepless", config=hf_unlearn.GradDiffConfig, procedure=OptimizerUpdate, search_space=space)(
            type("Stepless", (hf_unlearn.Objective,), {}))
    assert "stepless" not in _METHODS
