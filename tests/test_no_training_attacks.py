"""Attacks that train nothing: quantization, in-context relearning, prompting (``hf_unlearn.attacks``)."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import FORGET_TEXTS, char_tokenizer, tensor_digest, tiny_llama
from datasets import Dataset
from tokenizers import processors
from transformers import AutoModelForCausalLM

from hf_unlearn.attacks import AttackSuite
from hf_unlearn.attacks.inputs import (
    PROMPT_TEMPLATES,
    prefixed_evaluators,
    prompt_prefix,
    usable_templates,
    with_prefix,
)
from hf_unlearn.attacks.quantize import quantize_dequantize, quantized_copy
from hf_unlearn.attacks.relearn_config import RelearnAttackConfig
from hf_unlearn.data.facts import tokenize_facts
from hf_unlearn.evaluation.evaluators import FactEvaluator
from hf_unlearn.forward import weights_digest

FACTS = Dataset.from_list([{"prompt": f"Code {i} is", "answer": f"{i * 7 % 10}"} for i in range(6)])


def tokenized(texts, tokenizer):
    return Dataset.from_dict({"input_ids": [tokenizer(t)["input_ids"] for t in texts]})


REFERENCE = json.loads((Path(__file__).parent / "quantize_reference.json").read_text())


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_dequantize_matches_what_torchao_deployed(bits):
    """Against torchao's output recorded by ``quantize_reference.py`` (torchao is not a dependency): every linear
    weight bit for bit, and the logits of a probe to 1e-5."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=3)
    assert {n: tensor_digest(p) for n, p in model.named_parameters()} == REFERENCE["model"], "the tiny model is the one the reference quantized"
    ours = quantized_copy(model, bits).eval()
    recorded = REFERENCE["bits"][str(bits)]
    assert {n: tensor_digest(m.weight) for n, m in ours.named_modules() if n in recorded["weights"]} == recorded["weights"]
    assert len(recorded["weights"]) == 2 * 7, "every linear layer of both blocks (the head and embeddings are not quantized)"
    with torch.no_grad():
        logits = ours(torch.tensor([tokenizer(REFERENCE["probe"])["input_ids"]])).logits[0, -1, :8]
    torch.testing.assert_close(logits, torch.tensor(recorded["last_logits"]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_dequantize_is_what_torchao_deploys(bits, tmp_path):
    """The attack's weights are the ones transformers' TorchAoConfig loads, bit for bit, and so are the logits."""
    torchao = pytest.importorskip("torchao")  # where it is installed; elsewhere the recorded reference above
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, MappingType, PerGroup
    from transformers import TorchAoConfig

    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=3)
    model.save_pretrained(tmp_path)
    scheme = Int8WeightOnlyConfig() if bits == 8 else IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32), mapping_type=MappingType.ASYMMETRIC)
    deployed = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, quantization_config=TorchAoConfig(scheme)).eval()
    ours = quantized_copy(model, bits).eval()
    compared = 0
    for (name, module), (_, our_module) in zip(deployed.named_modules(), ours.named_modules()):
        if isinstance(getattr(module, "weight", None), torchao.utils.TorchAOBaseTensor):
            assert torch.equal(module.weight.dequantize(), our_module.weight), name
            compared += 1
    assert compared == 2 * 7, "every linear layer of both blocks (the head and embeddings are not quantized)"
    assert torch.equal(ours.lm_head.weight, model.lm_head.weight)
    ids = torch.tensor([tokenizer("vault 3 opens")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, deployed(ids).logits, rtol=0, atol=1e-5)


def test_quantize_leaves_the_model_passed_in_untouched():
    model = tiny_llama(len(char_tokenizer()), seed=1)
    before = weights_digest(model).hexdigest()
    quantized = quantized_copy(model, 4)
    assert weights_digest(model).hexdigest() == before
    assert not torch.equal(quantized.model.layers[0].mlp.gate_proj.weight, model.model.layers[0].mlp.gate_proj.weight)
    # 4 bits, groups of 32: at most 16 distinct values per group.
    group = quantized.model.layers[0].mlp.gate_proj.weight[0, :32]
    assert len(group.unique()) <= 16
    with pytest.raises(ValueError, match="group_size=24 does not divide"):
        quantize_dequantize(model.model.layers[0].mlp.gate_proj.weight, 4, 24)


def test_prefixed_inputs_are_built_token_by_token_and_score_only_the_evaluated_part():
    tokenizer = char_tokenizer()
    data = tokenized(["abc", "hello"], tokenizer)
    prefix_ids = tokenizer("xy\n", add_special_tokens=False)["input_ids"]
    prefixed = with_prefix(data, prefix_ids, tokenizer)
    assert prefixed[1]["input_ids"] == prefix_ids + data[1]["input_ids"]
    assert prefixed[1]["labels"] == [-100] * len(prefix_ids) + data[1]["input_ids"]
    # A fact's own labels (the answer only) are kept after the prefix.
    fact = Dataset.from_dict({"input_ids": [[5, 6, 7]], "labels": [[-100, 6, 7]]})
    assert with_prefix(fact, [9], tokenizer)[0] == {"input_ids": [9, 5, 6, 7], "labels": [-100, -100, 6, 7]}
    # The loss of a prefixed text is the text's alone: the prefix is context, not scored.
    model = tiny_llama(len(tokenizer), seed=2)
    ids = torch.tensor([prefixed[1]["input_ids"]])
    logits = model(ids).logits[0, :-1]
    targets = torch.tensor(prefixed[1]["labels"][1:])
    scored = targets != -100
    assert int(scored.sum()) == len(data[1]["input_ids"])
    loss = torch.nn.functional.cross_entropy(logits[scored], targets[scored])
    assert model(ids, labels=torch.tensor([prefixed[1]["labels"]])).loss.item() == pytest.approx(loss.item(), rel=1e-6)
    # Facts: the prefix goes before each prompt, the answer is unchanged.
    evaluators = prefixed_evaluators({"facts": FactEvaluator(FACTS)}, lambda fact: prompt_prefix("question", tokenizer, fact["prompt"]))
    first = evaluators["facts"].dataset[0]
    assert first["prompt"] == 'Question: How does "Code 0 is ..." end?\nAnswer: Code 0 is' and first["answer"] == "0"


def test_prompt_templates_skip_chat_without_a_chat_template():
    tokenizer = char_tokenizer()
    assert usable_templates(None, tokenizer) == [name for name in PROMPT_TEMPLATES if name != "chat"]
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert prompt_prefix("chat", tokenizer) == "<user>Complete the text with what you know.<assistant>"
    with pytest.raises(ValueError, match=r"prompt_templates=\['shout'\] is invalid: choose among reasoning, question"):
        RelearnAttackConfig(output_dir="unused", kind="prompt", prompt_templates=["reasoning", "shout"])


CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


def bos_tokenizer(adds: bool):
    """The character tokenizer with a BOS token ``<bos>`` that it adds to every text it encodes (as Llama's, Mistral's,
    Gemma's do) or only names (as SmolLM2's names ``<|im_start|>``), and a chat template that starts with it."""
    tokenizer = char_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<bos>"})
    if adds:
        tokenizer._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def test_a_bos_the_tokenizer_adds_stays_first_and_one_it_only_names_is_the_chats_own():
    """Prefixes went before the BOS on Llama-type tokenizers (the tests' tokenizer had none); and SmolLM2's chat lost
    its first <|im_start|>, which its tokenizer names its BOS but never adds."""
    chat = "<user>Complete the text with what you know.<assistant>"
    adds, names = bos_tokenizer(adds=True), bos_tokenizer(adds=False)
    bos = adds.bos_token_id
    prefix = adds("xy", add_special_tokens=False)["input_ids"]
    # Adds: the evaluated text brings its BOS, so the template's goes, and the prefix follows the BOS, unscored.
    assert prompt_prefix("chat", adds) == chat
    text = adds("abc")["input_ids"]
    assert text[0] == bos
    prefixed = with_prefix(Dataset.from_dict({"input_ids": [text]}), prefix, adds)[0]
    assert prefixed == {"input_ids": [bos, *prefix, *text[1:]], "labels": [-100] * (1 + len(prefix)) + text[1:]}
    # Names only: the token is the template's own text, kept; a text that starts with it gets the prefix before it.
    assert prompt_prefix("chat", names) == "<bos>" + chat
    text = names("<bos>abc")["input_ids"]
    assert text[0] == bos
    assert with_prefix(Dataset.from_dict({"input_ids": [text]}), prefix, names)[0]["input_ids"] == prefix + text


def test_the_chat_prompt_of_smollm2_starts_its_first_turn():
    """SmolLM2's bos_token is <|im_start|>, which its tokenizer does not add: stripping it began the chat with
    "system\nYou are a helpful AI assistant named SmolLM" (the chat attack of the standard and paper presets)."""
    from transformers import AutoTokenizer

    from hf_unlearn.models import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    chat = prompt_prefix("chat", tokenizer)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n"), chat
    assert chat.count("<|im_start|>") == 3 and chat.count("<|im_end|>") == 2


def test_a_suite_mixing_kinds_names_the_attackers_best_and_each_kind(tmp_path):
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5, max_position_embeddings=512)
    before = weights_digest(model).hexdigest()
    attack = tokenized(FORGET_TEXTS[:8], tokenizer)
    evaluation = {"forget": tokenized(FORGET_TEXTS[8:12], tokenizer), "retain": tokenized(FORGET_TEXTS[12:14], tokenizer)}
    common = dict(per_device_train_batch_size=4, report_to="none", max_steps=2, eval_steps=1)
    attacks = {
        "sgd": RelearnAttackConfig(output_dir=str(tmp_path / "sgd"), learning_rate=1e-6, **common),
        "quantize_int4": RelearnAttackConfig(output_dir=str(tmp_path / "q4"), kind="quantize", quantize_bits=4, **common),
        "in_context": RelearnAttackConfig(output_dir=str(tmp_path / "ic"), kind="in_context", in_context_shots=[1, 2, 50], **common),
        "prompt": RelearnAttackConfig(output_dir=str(tmp_path / "prompt"), kind="prompt", **common),
    }
    result = AttackSuite(attacks).run(model, attack_dataset=attack, eval_dataset=evaluation, processing_class=tokenizer)
    assert weights_digest(model).hexdigest() == before
    assert {name: a["kind"] for name, a in result.attacks.items()} == {"sgd": "fine_tune", "quantize_int4": "quantize", "in_context": "in_context", "prompt": "prompt"}
    start = result.start_point
    assert all(a["curve"][0] == {"step": 0, **start} for a in result.attacks.values()), "one unattacked point starts every curve"
    assert [p["variant"] for p in result.attacks["quantize_int4"]["curve"][1:]] == ["int4"]
    # 50 examples are more than the attack split holds: the attacker's best is over what it holds (and the context).
    assert [p["variant"] for p in result.attacks["in_context"]["curve"][1:]] == ["1 in context", "2 in context"]
    assert [p["variant"] for p in result.attacks["prompt"]["curve"][1:]] == ["reasoning", "question", "paraphrase"]
    # In-context and prompt attacks leave the weights, hence the retain loss, as they are.
    assert all(p["retain_loss"] == pytest.approx(start["retain_loss"]) for p in result.attacks["prompt"]["curve"])
    every_point = [(name, p) for name, a in result.attacks.items() for p in a["curve"] if not p.get("diverged")]
    name, lowest = min(every_point, key=lambda item: item[1]["forget_loss"])
    best = result.best_point()
    assert best["forget_loss"] == lowest["forget_loss"] and (best["attack"] == name or lowest == {"step": 0, **start})

    # Resumed from the saved results: nothing is evaluated again.
    again = AttackSuite(attacks).run(model, attack_dataset=attack, eval_dataset=evaluation, processing_class=tokenizer, resume=True)
    assert again.attacks == result.attacks


def test_a_model_without_linear_layers_is_refused_by_the_quantize_attack():
    """GPT-2's Conv1D layers: an "int4" attack that quantized nothing would report the model's own figures as robustness."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(char_tokenizer()), n_embd=16, n_layer=1, n_head=2, n_positions=64))
    with pytest.raises(ValueError, match="GPT2LMHeadModel has no nn.Linear layer besides its output head"):
        quantized_copy(model, 4)


def test_in_context_and_prompt_variants_are_those_the_context_holds_fewest_shots_first(tmp_path):
    """Shots are tried in increasing, distinct numbers (``16 1`` stopped at 16, never trying 1), and a prefix that would
    push the text past the model's positions or ``max_length`` is not scored (truncation would cut the scored text)."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5, max_position_embeddings=256)  # a text (34 tokens) after 2 examples (132) fits, not 4
    attack = tokenized(FORGET_TEXTS[:8], tokenizer)
    evaluation = {"forget": tokenized(FORGET_TEXTS[8:12], tokenizer), "retain": tokenized(FORGET_TEXTS[12:14], tokenizer)}
    common = dict(report_to="none", per_device_eval_batch_size=4)
    attacks = {
        "in_context": RelearnAttackConfig(output_dir=str(tmp_path / "ic"), kind="in_context", in_context_shots=[16, 4, 2, 1, 2], **common),
        "prompt": RelearnAttackConfig(output_dir=str(tmp_path / "prompt"), kind="prompt", max_length=80, **common),
    }
    result = AttackSuite(attacks).run(model, attack_dataset=attack, eval_dataset=evaluation, processing_class=tokenizer)
    assert [p["variant"] for p in result.attacks["in_context"]["curve"][1:]] == ["1 in context", "2 in context"]
    longest = max(len(ids) for ids in evaluation["forget"]["input_ids"]) + 1
    fits = [name for name in PROMPT_TEMPLATES if name != "chat" and len(tokenizer(prompt_prefix(name, tokenizer))["input_ids"]) + longest <= 80]
    assert 0 < len(fits) < 3 and [p["variant"] for p in result.attacks["prompt"]["curve"][1:]] == fits


def test_a_variant_that_broke_the_model_is_marked_and_never_the_attackers_best(tmp_path, monkeypatch):
    """A quantized copy that broke the model (retain loss past 1.5x) could be the attacker's best."""
    from hf_unlearn.attacks import quantize

    def broken_copy(model, bits, group_size):
        broken = copy.deepcopy(model)
        broken.lm_head.weight.data *= 300  # confidently wrong everywhere: the retain loss explodes, finite
        return broken

    monkeypatch.setattr(quantize, "quantized_copy", broken_copy)
    tokenizer = char_tokenizer()
    attack = tokenized(FORGET_TEXTS[:4], tokenizer)
    evaluation = {"forget": tokenized(FORGET_TEXTS[8:12], tokenizer), "retain": tokenized(FORGET_TEXTS[12:14], tokenizer)}
    config = RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", report_to="none")
    result = AttackSuite({"int4": config}).run(tiny_llama(len(tokenizer), seed=5), attack_dataset=attack, eval_dataset=evaluation,
                                               processing_class=tokenizer)  # fmt: skip
    start, variant = result.attacks["int4"]["curve"]
    assert variant["retain_loss"] > 1.5 * start["retain_loss"] and variant["diverged"] is True
    assert result.attacks["int4"]["diverged_at"] == "int4" and result.attacks["int4"]["best"] == start


def test_resume_reads_back_an_attack_that_trains_nothing_only_with_the_same_settings(tmp_path):
    """`evaluate --attack_steps 60` after a 2-step run must not read the 2-step results back (README's Guarantees)."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5, max_position_embeddings=512)
    attack = tokenized(FORGET_TEXTS[:8], tokenizer)
    evaluation = {"forget": tokenized(FORGET_TEXTS[8:12], tokenizer), "retain": tokenized(FORGET_TEXTS[12:14], tokenizer)}

    def variants(shots: list[int]) -> list[str]:
        config = RelearnAttackConfig(output_dir=str(tmp_path), kind="in_context", in_context_shots=shots, report_to="none")
        result = AttackSuite({"in_context": config}).run(model, attack_dataset=attack, eval_dataset=evaluation, processing_class=tokenizer, resume=True)
        return [p["variant"] for p in result.attacks["in_context"]["curve"][1:]]

    assert variants([1]) == ["1 in context"]
    assert variants([2]) == ["2 in context"], "other settings: run again, not read back"


def test_relearn_attack_trainer_refuses_a_kind_that_trains_nothing(tmp_path):
    """It would fine-tune: an attack that trains nothing runs through its kind (AttackSuite), not a trainer."""
    from hf_unlearn.attacks import RelearnAttackTrainer

    tokenizer = char_tokenizer()
    config = RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", report_to="none")
    with pytest.raises(ValueError, match="RelearnAttackTrainer fine-tunes"):
        RelearnAttackTrainer(tiny_llama(len(tokenizer)), config, attack_dataset=tokenized(FORGET_TEXTS[:4], tokenizer),
                             eval_dataset={"forget": tokenized(FORGET_TEXTS[8:10], tokenizer)}, processing_class=tokenizer)  # fmt: skip


def test_config_refuses_fine_tuning_settings_on_attacks_that_train_nothing(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", use_peft=True)
    with pytest.raises(ValueError, match="kind"):
        RelearnAttackConfig(output_dir=str(tmp_path), kind="distill")
    with pytest.raises(ValueError, match="quantize_bits"):
        RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", quantize_bits=3)
    with pytest.raises(ValueError, match="in_context_shots are in_context settings"):  # any kind's, as registered
        RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", in_context_shots=[2])
    config = RelearnAttackConfig(output_dir=str(tmp_path), kind="in_context", in_context_shots=[4, 1])
    assert dataclasses.replace(config, eval_on_start=False).describe() == "4/1 attack examples in context, no training"


def test_the_attack_command_takes_a_kind_for_one_attack_only(tmp_path):
    from hf_unlearn.commands.attack import AttackArguments, suite_from

    config = RelearnAttackConfig(output_dir=str(tmp_path), kind="quantize", quantize_bits=8)
    assert suite_from(AttackArguments(attack_suite="none"), config, "eval_forget_loss").attacks["attack"].kind == "quantize"
    with pytest.raises(ValueError, match="--kind, --quantize_bits describe one attack"):
        suite_from(AttackArguments(attack_suite="standard"), config, "eval_forget_loss")
    in_context = RelearnAttackConfig(output_dir=str(tmp_path), kind="in_context", in_context_shots=[2])
    with pytest.raises(ValueError, match="--in_context_shots, --kind describe one attack"):  # each kind's settings, as registered
        suite_from(AttackArguments(attack_suite="standard"), in_context, "eval_forget_loss")
    kinds = {c.kind for c in suite_from(AttackArguments(attack_suite="standard"), RelearnAttackConfig(output_dir=str(tmp_path)), "eval_forget_loss").attacks.values()}
    assert kinds == {"fine_tune", "quantize", "in_context", "prompt"}


def test_in_context_reads_a_text_attack_split_and_facts_get_the_prefix(tmp_path, monkeypatch):
    """The facts scenario attacks on fact-stating sentences (a text column), not tokens: in_context crashed on them."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=6, max_position_embeddings=512)
    model.requires_grad_(False)
    sentences = Dataset.from_dict({"text": [f"The code of vault {i} is {i * 7 % 10}." for i in range(6)]})
    facts = Dataset.from_list([{"prompt": f"Code {i} is", "answer": f"{i * 7 % 10}"} for i in range(3)])
    evaluation = {"forget": tokenize_facts(facts, tokenizer)}
    config = RelearnAttackConfig(output_dir=str(tmp_path), kind="in_context", in_context_shots=[1, 3], report_to="none",
                                 per_device_eval_batch_size=4, metric_for_best_model="eval_facts_accuracy", greater_is_better=True)  # fmt: skip
    seen, original = [], FactEvaluator.__call__
    monkeypatch.setattr(FactEvaluator, "__call__", lambda self, m, t: (seen.append(list(self.dataset["prompt"])), original(self, m, t))[1])
    result = AttackSuite({"in_context": config}).run(
        model, attack_dataset=sentences, eval_dataset=evaluation, evaluators={"facts": FactEvaluator(facts)}, processing_class=tokenizer
    )
    assert [p["variant"] for p in result.attacks["in_context"]["curve"][1:]] == ["1 in context", "3 in context"]
    assert seen[-1][0] == "The code of vault 0 is 0.\nThe code of vault 1 is 7.\nThe code of vault 2 is 4.\nCode 0 is"
    assert not any(p.requires_grad for p in model.parameters()), "the model's flags are left as they are"


def test_every_fine_tuning_attack_diverged_is_still_said_when_others_trained_nothing():
    from hf_unlearn.attacks import AttackSuiteResult

    start = {"step": 0, "forget_loss": 5.0, "retain_loss": 3.0}
    broken = {"kind": "fine_tune", "settings": "", "curve": [start, {"step": 10, "forget_loss": 1.0, "retain_loss": 9.0, "diverged": True}],
              "best": start, "diverged_at": 10}  # fmt: skip
    prompt = {"kind": "prompt", "settings": "", "curve": [start, {"step": 0, "variant": "reasoning", "forget_loss": 4.9, "retain_loss": 3.0}],
              "best": {"step": 0, "variant": "reasoning", "forget_loss": 4.9, "retain_loss": 3.0}, "diverged_at": None}  # fmt: skip
    assert AttackSuiteResult("forget_loss", False, {"sgd": broken, "prompt": prompt}).all_diverged


def test_presets_take_fine_tuning_settings_for_their_fine_tuning_attacks(tmp_path):
    suite = AttackSuite.preset("standard", output_dir=str(tmp_path), use_peft=True)
    assert all(c.use_peft == (c.kind == "fine_tune") for c in suite.attacks.values())
