"""FSDP2 on two CPU processes (gloo) gives the results of one process and of DDP (docs/design.md §8, "Sharded weights").

accelerate engages FSDP only on GPUs; tests/distributed_fsdp.py's TEST-ONLY shim engages it on the CPU
processes, and every run checks that the model really was sharded.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FORGET_TEXTS, RETAIN_TEXTS, char_tokenizer, tiny_llama, unlearn_config
from datasets import Dataset
from safetensors.torch import load_file
from test_distributed import run, run_each

from hf_unlearn import UnlearnTrainer

METHODS = ["mudman", "tar", "graddiff", "npo", "simnpo", "rmu", "circuit_breakers_lora", "cir", "npo_lora", "graddiff_wagle"]
# Not zero: FSDP reduce-scatters the gradient of each process's loss scaled by its share of the tokens, where DDP's
# path (and one process) averages the unscaled gradients after the backward; the roundings differ (up to 6e-8 with SGD,
# 6e-7 with AdamW, whose division by the root of the second moment magnifies them on small gradients; the DDP tests
# allow 1e-5 for the same reason).
TOLERANCE = 1e-5


def fsdp(tmp_path, name, method, *args, expect_failure=False):
    result = run("distributed_fsdp.py", tmp_path / f"{name}.pt", 2, 8, method, *args, expect_failure=expect_failure)
    assert result is None or result.pop("sharded"), "FSDP was not engaged: nothing sharded was compared"
    return result


def assert_same_weights(expected, actual, tolerance, method=""):
    assert expected.keys() == actual.keys()
    for name, weight in expected.items():
        difference = (weight - actual[name]).abs().max()
        assert difference <= tolerance, f"{method} {name}: {difference}"


def test_fsdp_two_processes_match_one_and_ddp(tmp_path):
    """Same global batch of 8: one process with 8 examples per step, two with 4 each under DDP, and under FSDP2, for
    every method of METHODS (each way in one launch: starting one costs more than a tiny model's run)."""
    single = run_each("distributed_unlearn.py", tmp_path / "single", 1, 8, METHODS)
    ddp = run_each("distributed_unlearn.py", tmp_path / "ddp", 2, 8, METHODS)
    sharded = run_each("distributed_fsdp.py", tmp_path / "fsdp", 2, 8, METHODS)
    for method in METHODS:
        for name, weight in single[method]["weights"].items():
            assert not torch.allclose(weight, single[method]["initial"][name], atol=1e-4), f"{method}: {name} did not move: nothing was compared"
        assert sharded[method].pop("sharded"), f"{method}: FSDP was not engaged: nothing sharded was compared"
        assert not ddp[method].pop("sharded") and not single[method].pop("sharded"), method
        assert_same_weights(single[method]["weights"], sharded[method]["weights"], TOLERANCE, method)
        assert_same_weights(ddp[method]["weights"], sharded[method]["weights"], TOLERANCE, method)


@pytest.mark.parametrize("method", ["mudman", "cir"])
def test_fsdp_killed_during_a_sharded_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, method):
    """Killed while writing a checkpoint (FSDP's sharded model and optimizer written, the method state not): the
    resumed run restores the previous checkpoint's shards and each process's method state (MUDMAN's adversary
    shards; CIR's original-weight shards and its own statistics), bit for bit."""
    straight = fsdp(tmp_path, "straight", method)["weights"]
    output_dir = tmp_path / "run"
    fsdp(tmp_path, "killed", method, "killed", output_dir, expect_failure=True)
    kill_step = {"mudman": 3, "cir": 5}[method]
    assert (output_dir / f"checkpoint-{kill_step}").is_dir()
    assert any((output_dir / f"checkpoint-{kill_step - 1}").glob("pytorch_model_fsdp*")), "not a sharded checkpoint"
    resumed = fsdp(tmp_path, "resumed", method, "resume", output_dir)["weights"]
    assert_same_weights(straight, resumed, 0.0)


def test_fsdp_save_model_writes_an_ordinary_safetensors_model(tmp_path):
    result = fsdp(tmp_path, "saved", "mudman", "save", tmp_path / "model")
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert_same_weights(result["weights"], {name: saved[name] for name in result["weights"]}, 0.0)
    assert (tmp_path / "model" / "README.md").is_file()


def test_fsdp_undo_matches_one_process(tmp_path):
    """UNDO's distillation with the student and the teacher sharded: one process's weights on the same global batch
    of texts of different lengths (AdamW: 7e-7 measured)."""
    single = run("distributed_undo.py", tmp_path / "single.pt", 1, 8)
    sharded = run("distributed_undo.py", tmp_path / "sharded.pt", 2, 8, "fsdp")
    assert sharded.pop("sharded") and not single.pop("sharded")
    for name, weight in single["weights"].items():
        assert not torch.allclose(weight, single["initial"][name], atol=1e-4), f"{name} did not move: nothing was compared"
    assert_same_weights(single["weights"], sharded["weights"], TOLERANCE)


def test_fsdp_evaluators_match_one_process(tmp_path):
    """The MCQ and fact evaluators on a model sharded by fully_shard: 9 facts in batches of 2 give the processes 3
    and 2 batches, and every forward of a sharded model needs every process (a process that stopped early hung the
    other), so each runs as many as the largest share."""
    single = run("distributed_eval.py", tmp_path / "single.pt", 1)
    sharded = run("distributed_eval.py", tmp_path / "sharded.pt", 2, "fsdp")
    assert sharded["sharded"] and not single["sharded"]
    assert torch.allclose(single["letter_logits"], sharded["letter_logits"], atol=1e-5)
    for name in ("mcq", "facts"):
        assert single[name].keys() == sharded[name].keys()
        for key in single[name]:
            assert sharded[name][key] == pytest.approx(single[name][key], abs=1e-6), (name, key)


@pytest.mark.parametrize("adapter", ["", "lora"])
def test_fsdp_relearning_attack_equals_ddp(tmp_path, adapter):
    """A relearning attack (a full fine-tune, or a LoRA adapter's, evaluated with greedy samples) trains the sharded
    model as DDP trains the whole one: the same attack curve and weights (equal here, bit for bit)."""
    ddp = run("distributed_relearn.py", tmp_path / "ddp.pt", 2, "ddp", adapter)
    sharded = run("distributed_relearn.py", tmp_path / "fsdp.pt", 2, "fsdp", adapter)
    assert sharded["sharded"] and not ddp["sharded"]
    assert [point["forget_loss"] for point in ddp["curve"]] == pytest.approx([point["forget_loss"] for point in sharded["curve"]], abs=1e-6)
    assert ddp["curve"][-1]["forget_loss"] < ddp["curve"][0]["forget_loss"] - 0.02, "the attack relearned nothing"
    assert_same_weights(ddp["weights"], sharded["weights"], TOLERANCE)


def test_fsdp_asked_for_on_cpu_processes_without_it_engaged_is_refused(tmp_path, monkeypatch):
    """Without the test's shim accelerate runs CPU processes under DDP: a run that asked for FSDP is told, not fooled."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    tokenizer = char_tokenizer()
    with pytest.raises(ValueError, match="FSDP was asked for, but accelerate did not engage it on cpu processes"):
        UnlearnTrainer(
            tiny_llama(len(tokenizer)), unlearn_config(tmp_path), forget_dataset=Dataset.from_dict({"text": FORGET_TEXTS}),
            retain_dataset=Dataset.from_dict({"text": RETAIN_TEXTS}), processing_class=tokenizer,
        )  # fmt: skip


def test_deepspeed_and_fsdp1_are_refused_naming_fsdp2(tmp_path):
    """Neither engages on this machine: the check is given the trainer's flags as a DeepSpeed or FSDP1 run sets them."""
    from hf_unlearn.causal_lm_trainer import check_sharding

    def trainer(deepspeed: bool, fsdp_version: int | None):
        plugin = SimpleNamespace(fsdp_version=fsdp_version)
        return SimpleNamespace(is_deepspeed_enabled=deepspeed, is_fsdp_enabled=fsdp_version is not None, args=unlearn_config(tmp_path),
                               accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)))  # fmt: skip

    with pytest.raises(NotImplementedError, match=r"DeepSpeed is not supported: shard the model with FSDP2 instead \(accelerate launch --config_file hf_unlearn/configs/accelerate/fsdp2.yaml"):
        check_sharding(trainer(True, None))
    with pytest.raises(NotImplementedError, match="FSDP1 is not supported: set fsdp_version: 2"):
        check_sharding(trainer(False, 1))
    check_sharding(trainer(False, 2))


def test_the_shipped_accelerate_config_is_fsdp2():
    """The file the README's and the refusals' commands name, as accelerate reads it."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).parents[1] / "hf_unlearn" / "configs" / "accelerate" / "fsdp2.yaml"))
    assert config.distributed_type == "FSDP" and config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"


def test_sharded_top_fraction_keeps_exactly_k_with_ties(tmp_path):
    """WAGLE's mask over shards keeps every score above the k-th largest and, of the ties at it, as many as make k."""
    masks = run("distributed_top_fraction.py", tmp_path / "masks.pt", 2)["masks"]
    assert masks[0].tolist() == [[True, True], [False, True], [True, False], [False, False]]
    assert masks[1].tolist() == [True, True, False]


def test_the_attack_suite_under_fsdp_gives_the_one_process_report(tmp_path):
    """The quick suite (LoRA and AdamW fine-tuning, 4-bit quantization) on 2 sharded processes: every curve, and so the
    attacker's best, as on one process. The attack that trains nothing once stopped the run: FSDP2 would not prepare
    a model without an optimizer for its evaluation."""
    single = run("distributed_suite.py", tmp_path / "single.pt", 1, "single")
    sharded = run("distributed_suite.py", tmp_path / "fsdp.pt", 2, "fsdp")
    assert sharded.pop("sharded") and not single.pop("sharded"), "FSDP was not engaged: nothing sharded was compared"
    expected, actual = single["suite"]["attacks"], sharded["suite"]["attacks"]
    assert expected.keys() == actual.keys() == {"lora_1e-3", "adamw_1e-4", "quantize_int4"}
    lora = expected["lora_1e-3"]["curve"]
    assert lora[-1]["forget_loss"] < lora[0]["forget_loss"] - 0.01, "the attack relearned nothing: nothing was compared"
    for name, attack in expected.items():
        assert [p["step"] for p in attack["curve"]] == [p["step"] for p in actual[name]["curve"]], name
        for point, other in zip(attack["curve"], actual[name]["curve"]):
            for metric in ("forget_loss", "retain_loss"):
                assert abs(point[metric] - other[metric]) <= TOLERANCE, (name, point["step"], metric, point[metric], other[metric])
