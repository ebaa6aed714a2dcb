"""Benchmark: the fictitious-facts target and oracle, fine-tuned from the embedded SmolLM2-135M-Instruct.

After TOFU: the *target* is fine-tuned on all fictitious facts (``hf_unlearn.data.fictitious``), forget and
retain; the *oracle* on the retain facts only, with the same recipe. The oracle is what perfect unlearning
of the forget facts would reach. Both also train on the same chunks of general text (``pydoc_prose``, its
training documents), so that their general-text loss stays near the untouched model's.

Facts are trained as their phrasings (three sentences per fact, every token counts, ``fact_sentences``):
the first phrasing is the prompt followed by the answer, so greedy decoding is trained on directly, and
the two others state the fact another way round. Full fine-tuning in float32, AdamW at a constant rate,
batches grouped by length, seeded. Each model trains until greedy decoding reproduces at least
``--stop_accuracy`` of each split it trains on (checked after every epoch), at most ``--max_epochs``.

Checks (printed as a table, written with the machine and package versions):
- target: forget and retain fact accuracy >= 0.95;
- oracle: forget accuracy <= chance (``chance_accuracy``) + ``--chance_margin``, retain accuracy >= 0.95;
- both: general-text loss on held-out ``pydoc_prose`` documents (never trained on) <= the untouched model's
  + ``--loss_margin`` nats.

Resumable: a checkpoint per epoch (weights and optimizer, in the cache: ``oracle_folder``) and the state in
``--results_dir/oracle_seed<seed>.json`` (small: settings, per-epoch accuracies, checks). Killed, the same
command continues from the last epoch; a finished model is skipped.

    nice -n 19 python benchmarks/oracle.py [--seed 0] [--num_forget 40] [--num_retain 40] [--threads 1]

The models land in ``$HF_UNLEARN_CACHE/oracle/{target,oracle}-<seed>`` (``hf_unlearn.data.fictitious.oracle_models``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, concatenate_datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from hf_unlearn.data import LMCollator, chunk_tokens, fact_sentences, load_text_source, split_dataset
from hf_unlearn.data.fictitious import chance_accuracy, fictitious_facts, oracle_folder
from hf_unlearn.environment import environment
from hf_unlearn.evaluation.facts import fact_accuracy
from hf_unlearn.forward import lm_loss
from hf_unlearn.models import default_model_path

HERE = Path(__file__).resolve().parent
TRAINED_SPLITS = {"target": ("forget", "retain"), "oracle": ("retain",)}
KNOWN = 0.95  # the accuracy a model must reach on the facts it was trained on
# The documents split as the project's scenarios split their retain text (DataArguments.split_seed, unlearning_splits):
# the target and oracle train on retain_train documents only, so the retain_eval ones stay held out when unlearning.
GENERAL_SPLIT_SEED = 42


def write_json(path: Path, data: dict) -> None:
    """Write through a temporary file and rename: a kill never leaves half a state file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


def general_text(tokenizer, chunk_length: int) -> dict[str, Dataset]:
    """``pydoc_prose`` documents split 75/25 into train and held-out eval (``GENERAL_SPLIT_SEED``), cut into chunks."""
    parts = split_dataset(load_text_source("pydoc_prose"), names=("train", "eval"), fractions=(0.75, 0.25), seed=GENERAL_SPLIT_SEED)
    return {name: chunk_tokens(part, tokenizer, chunk_length=chunk_length).shuffle(seed=GENERAL_SPLIT_SEED) for name, part in parts.items()}


@torch.no_grad()
def text_loss(model: torch.nn.Module, chunks: Dataset, batch_size: int = 16) -> float:
    """Mean next-token loss over equal-length chunks (every chunk weighs the same)."""
    model.eval()
    losses = []
    for start in range(0, len(chunks), batch_size):
        ids = torch.tensor(chunks[start : start + batch_size]["input_ids"])
        losses.append(lm_loss(model, {"input_ids": ids, "labels": ids})[0].item() * len(ids))
    return sum(losses) / len(chunks)


def model_metrics(model, tokenizer, splits: dict[str, Dataset], general_eval: Dataset) -> dict[str, float]:
    """Greedy fact accuracy on each split and the general-text loss on held-out chunks."""
    metrics = {f"{name}_accuracy": fact_accuracy(model, tokenizer, facts)["accuracy"] for name, facts in splits.items()}
    metrics["general_loss"] = text_loss(model, general_eval)
    return metrics


def checks(state: dict, margins: dict[str, float]) -> list[dict[str, Any]]:
    """The pass/fail checks on the finished models' final metrics (those present)."""
    rows = []
    base = state["untouched"]["general_loss"]
    for name, model in state["models"].items():
        if not model.get("done"):
            continue
        final = model["final"]
        if name == "target":
            rows.append({"model": name, "check": "forget accuracy >= 0.95", "value": final["forget_accuracy"], "passed": final["forget_accuracy"] >= KNOWN})
        else:
            bound = state["chance_accuracy"]["forget"] + margins["chance"]
            rows.append({"model": name, "check": f"forget accuracy <= chance + {margins['chance']} = {bound:.3f}",
                         "value": final["forget_accuracy"], "passed": final["forget_accuracy"] <= bound})  # fmt: skip
        rows.append({"model": name, "check": "retain accuracy >= 0.95", "value": final["retain_accuracy"], "passed": final["retain_accuracy"] >= KNOWN})
        bound = base + margins["loss"]
        rows.append({"model": name, "check": f"general loss <= untouched + {margins['loss']} = {bound:.3f}",
                     "value": final["general_loss"], "passed": final["general_loss"] <= bound})  # fmt: skip
    return rows


class EpochCheck(TrainerCallback):
    """After each epoch: record the model's metrics in the state file; stop once every trained split is known."""

    def __init__(self, name: str, tokenizer, splits: dict[str, Dataset], general_eval: Dataset, state: dict, state_path: Path,
                 stop_accuracy: float) -> None:  # fmt: skip
        self.name, self.tokenizer, self.splits, self.general_eval = name, tokenizer, splits, general_eval
        self.state, self.state_path, self.stop_accuracy = state, state_path, stop_accuracy

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        metrics = model_metrics(model, self.tokenizer, self.splits, self.general_eval)
        model.train()
        epoch = round(state.epoch)
        record = self.state["models"][self.name]
        record["epochs"][str(epoch)] = {"step": state.global_step, **metrics}  # a redone epoch (after a kill) overwrites
        write_json(self.state_path, self.state)
        print(f"{self.name} epoch {epoch} (step {state.global_step}): " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        if all(metrics[f"{split}_accuracy"] >= self.stop_accuracy for split in TRAINED_SPLITS[self.name]):
            control.should_training_stop = True
        return control


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` (written last) reads; incomplete ones, from a kill, removed."""
    complete = []
    for checkpoint in sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1])):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            complete.append(checkpoint)
        except (FileNotFoundError, json.JSONDecodeError):
            shutil.rmtree(checkpoint)
    return str(complete[-1]) if complete else None


def train_model(name: str, args: argparse.Namespace, data: dict, state: dict, state_path: Path) -> None:
    """Fine-tune the embedded model into ``name``, resuming from its last epoch checkpoint, and save it to its folder."""
    folder = oracle_folder(name, args.seed)
    checkpoints = folder.parent / f".{folder.name}-checkpoints"  # beside the model: the model folder exists only once finished
    checkpoints.mkdir(parents=True, exist_ok=True)
    tokenizer = data["tokenizer"]
    trained = [data["sentences"][split] for split in TRAINED_SPLITS[name]]
    train = concatenate_datasets([*trained, data["general_train"]])
    model = AutoModelForCausalLM.from_pretrained(default_model_path(), dtype=torch.float32)
    training = TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=args.max_epochs, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", weight_decay=0.0, optim="adamw_torch",
        train_sampling_strategy="group_by_length", save_strategy="epoch", save_total_limit=1, logging_steps=10, report_to="none",
        seed=args.seed, data_seed=args.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    splits = {split: data["facts"][split] for split in ("forget", "retain")}
    callback = EpochCheck(name, tokenizer, splits, data["general_eval"], state, state_path, args.stop_accuracy)
    trainer = Trainer(model=model, args=training, train_dataset=train, data_collator=LMCollator(tokenizer.pad_token_id),
                      processing_class=tokenizer, callbacks=[callback])  # fmt: skip
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(checkpoints))
    record = state["models"][name]
    record["final"] = model_metrics(model, tokenizer, splits, data["general_eval"])
    record["steps"] = trainer.state.global_step
    partial = folder.parent / f".{folder.name}-partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "fictitious_facts.json").write_text(json.dumps({"num_forget": args.num_forget, "num_retain": args.num_retain, "seed": args.seed}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    record["done"] = True
    write_json(state_path, state)
    shutil.rmtree(checkpoints)  # optimizer state and weights: ~1.6 GB no longer needed


def prepare(args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    dataset = fictitious_facts(args.num_forget, args.num_retain, args.seed)
    facts = {split: dataset.filter(lambda row, s=split: row["split"] == s) for split in ("forget", "retain")}

    def tokenized(texts: Dataset) -> Dataset:
        return texts.map(lambda row: tokenizer(row["text"]), remove_columns=texts.column_names).select_columns(["input_ids"])

    sentences = {split: tokenized(fact_sentences(part, num_phrasings=3)) for split, part in facts.items()}
    general = general_text(tokenizer, args.chunk_length)
    num_general = math.ceil(args.general_ratio * sum(len(s) for s in sentences.values()))
    return {
        "tokenizer": tokenizer, "facts": facts, "sentences": sentences,
        "general_train": general["train"].select(range(num_general)),
        "general_eval": general["eval"].select(range(min(args.eval_chunks, len(general["eval"])))),
    }  # fmt: skip


def print_table(state: dict) -> None:
    print("| model | forget accuracy | retain accuracy | general loss | epochs | done |\n|---|---|---|---|---|---|")
    untouched = state["untouched"]
    print(f"| untouched | {untouched['forget_accuracy']:.3f} | {untouched['retain_accuracy']:.3f} | {untouched['general_loss']:.4f} | 0 | - |")
    for name, model in state["models"].items():
        last = model.get("final") or (model["epochs"][max(model["epochs"], key=int)] if model["epochs"] else None)
        if last:
            print(f"| {name} | {last['forget_accuracy']:.3f} | {last['retain_accuracy']:.3f} | {last['general_loss']:.4f} "
                  f"| {len(model['epochs'])} | {bool(model.get('done'))} |")  # fmt: skip
    print(f"\nchance accuracy: forget {state['chance_accuracy']['forget']:.3f}, retain {state['chance_accuracy']['retain']:.3f}")
    if state["checks"]:
        print("\n| model | check | value | passed |\n|---|---|---|---|")
        for row in state["checks"]:
            print(f"| {row['model']} | {row['check']} | {row['value']:.4f} | {row['passed']} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_forget", type=int, default=40)
    parser.add_argument("--num_retain", type=int, default=40)
    parser.add_argument("--models", nargs="+", choices=list(TRAINED_SPLITS), default=list(TRAINED_SPLITS))
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_epochs", type=int, default=30)
    parser.add_argument("--stop_accuracy", type=float, default=KNOWN, help="stop once each trained split reaches it")
    parser.add_argument("--general_ratio", type=float, default=0.5, help="general-text chunks per fact sentence of the target")
    parser.add_argument("--chunk_length", type=int, default=32)
    parser.add_argument("--eval_chunks", type=int, default=128, help="held-out general-text chunks for the loss")
    parser.add_argument("--chance_margin", type=float, default=0.1)
    parser.add_argument("--loss_margin", type=float, default=0.1, help="nats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results_dir", default=str(HERE / "results" / "oracle"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    state_path = results / f"oracle_seed{args.seed}.json"
    setting = {k: v for k, v in vars(args).items() if k not in ("models", "threads", "results_dir")}
    setting["general_split_seed"] = GENERAL_SPLIT_SEED
    data = prepare(args)
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state.get("setting") != setting:  # another recipe: its epochs and models do not continue this one
        if state:
            print(f"settings differ from {state_path}'s: starting over")
            for name in TRAINED_SPLITS:
                shutil.rmtree(oracle_folder(name, args.seed).parent / f".{oracle_folder(name, args.seed).name}-checkpoints", ignore_errors=True)
        untouched = AutoModelForCausalLM.from_pretrained(default_model_path(), dtype=torch.float32)
        state = {
            "setting": setting,
            "chance_accuracy": {split: chance_accuracy(part) for split, part in data["facts"].items()},
            "untouched": model_metrics(untouched, data["tokenizer"], data["facts"], data["general_eval"]),
            "models": {name: {"epochs": {}} for name in TRAINED_SPLITS},
            "checks": [],
        }
        del untouched
    state["environment"] = environment()
    write_json(state_path, state)
    for name in args.models:
        if not state["models"][name].get("done"):
            train_model(name, args, data, state, state_path)
    state["checks"] = checks(state, {"chance": args.chance_margin, "loss": args.loss_margin})
    write_json(state_path, state)
    print_table(state)


if __name__ == "__main__":
    main()
