import copy

import pytest
import torch
from conftest import tiny_llama, unlearn_config
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from hf_unlearn import UnlearnTrainer
from hf_unlearn.targets import resolve_target_modules


def tiny_gpt2(vocab_size):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128))


def tiny_neox(vocab_size):
    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    return GPTNeoXForCausalLM(config)


@pytest.mark.parametrize(
    "build, expected",
    [
        (tiny_llama, ["model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate_proj.weight"]),
        (tiny_neox, ["gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "gpt_neox.layers.1.mlp.dense_h_to_4h.weight"]),
        (tiny_gpt2, ["transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.weight"]),
    ],
)
def test_first_mlp_alias_across_architectures(build, expected):
    assert list(resolve_target_modules(build(50), ["first_mlp"])) == expected


def test_names_regex_and_all_linear():
    model = tiny_llama(50)
    assert list(resolve_target_modules(model, ["mlp.up_proj"])) == [
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
    ]
    assert list(resolve_target_modules(model, [r"model\.layers\.1\.self_attn\.[qk]_proj"])) == [
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
    ]
    all_linear = resolve_target_modules(model, ["all_linear"])
    assert len(all_linear) == 2 * 7 and not any("lm_head" in name for name in all_linear)


def test_no_bias_is_targeted():
    targets = resolve_target_modules(tiny_gpt2(50), ["c_fc"])
    assert all(name.endswith(".weight") for name in targets)


def test_gpt2_conv1d_trains_only_first_mlp(tokenizer, forget_dataset, retain_dataset, tmp_path):
    model = tiny_gpt2(len(tokenizer))
    initial = copy.deepcopy(model.state_dict())
    args = unlearn_config(tmp_path, max_steps=2)
    UnlearnTrainer(model, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, processing_class=tokenizer).train()
    changed = {name for name, t in model.state_dict().items() if not torch.equal(t, initial[name])}
    assert changed == {"transformer.h.0.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.weight"}
