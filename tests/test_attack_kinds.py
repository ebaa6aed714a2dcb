"""A new attack kind is one file plus its preset line: defined outside the package, it runs in a suite and reaches
the report like the built-in kinds (docs/design.md §6.1)."""

import importlib
import shutil
from pathlib import Path

from conftest import FORGET_TEXTS, char_tokenizer, tiny_llama
from datasets import Dataset

from hf_unlearn.attacks import ATTACK_KINDS, PRESETS, AttackSuite
from hf_unlearn.evaluation import RobustnessReport

EXAMPLE = Path(__file__).parent / "examples" / "half_precision_attack.py"


def tokenized(texts, tokenizer):
    return Dataset.from_dict({"input_ids": [tokenizer(text)["input_ids"] for text in texts]})


def test_a_kind_defined_in_its_own_module_runs_in_a_suite_and_reaches_the_report(tmp_path, monkeypatch):
    package = tmp_path / "my_attacks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, package / "half_precision.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ATTACK_KINDS, "half_precision", None)  # removed again after the test
    importlib.import_module("my_attacks.half_precision")  # registers the kind
    monkeypatch.setitem(PRESETS["quick"], "bf16", {"kind": "half_precision"})  # its preset line

    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5, max_position_embeddings=512)
    attack = tokenized(FORGET_TEXTS[:8], tokenizer)
    evaluation = {"forget": tokenized(FORGET_TEXTS[8:12], tokenizer), "retain": tokenized(FORGET_TEXTS[12:14], tokenizer)}
    suite = AttackSuite.preset("quick", output_dir=str(tmp_path / "attacks"), names=["adamw_1e-4", "bf16"], max_steps=2, eval_steps=1,
                               per_device_train_batch_size=4)  # fmt: skip
    assert suite.attacks["bf16"].kind == "half_precision"
    results = {
        name: suite.in_folder(name).run(model, attack_dataset=attack, eval_dataset=evaluation, processing_class=tokenizer)
        for name in ("no_unlearning", "unlearned")
    }

    bf16 = results["unlearned"].attacks["bf16"]
    assert bf16["kind"] == "half_precision" and bf16["settings"] == "bfloat16 weights, no training"
    start, point = bf16["curve"]
    assert start == {"step": 0, **results["unlearned"].start_point} and point["variant"] == "bf16"
    assert point["forget_loss"] != start["forget_loss"], "evaluated in bfloat16"
    assert bf16["best"] in (start, point) and bf16["diverged_at"] is None
    report = RobustnessReport.from_suites("a new kind", results)
    assert report.to_dict()["runs"]["unlearned"]["attacks"]["bf16"]["curve"] == bf16["curve"]
    assert "| unlearned | bf16 | half_precision | bfloat16 weights, no training |" in report.to_markdown()
