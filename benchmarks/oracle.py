"""Benchmark: the fictitious-facts target and oracle, fine-tuned from the embedded SmolLM2-135M-Instruct.

After TOFU: the *target* is fine-tuned on all fictitious facts (``hf_unlearn.data.fictitious``), forget and
retain; the *oracle* on the retain facts only, with the same recipe. The oracle is what perfect unlearning
of the forget facts would reach. Both also train on the same general text (``pydoc_prose``, its training
documents; fresh chunks every epoch, the same for both), so that their general-text loss stays near the
untouched model's.

Facts are trained as their phrasings (three sentences per fact, every token counts, ``fact_sentences``):
the first phrasing is the prompt followed by the answer, so greedy decoding is trained on directly, and
the two others state the fact another way round. Full fine-tuning in float32, AdamW at a constant rate,
fact and general batches apart, seeded per epoch. Each model trains until greedy decoding reproduces at least
``--stop_accuracy`` of each split it trains on (checked after every epoch), at most ``--max_epochs``.

Checks (printed as a table, written with the machine and package versions):
- target: forget and retain fact accuracy >= 0.95;
- oracle: forget accuracy <= chance (``chance_accuracy``) + ``--chance_margin``, retain accuracy >= 0.95;
- both: general-text loss on held-out ``pydoc_prose`` documents (never trained on) <= the untouched model's
  + ``--loss_margin`` nats.

Resumable: a checkpoint per epoch (weights and optimizer, in the cache beside ``oracle_folder``) and the state in
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
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.data import LMCollator, chunk_tokens, fact_sentences, load_text_source, split_dataset
from hf_unlearn.data.fictitious import NUM_FORGET, NUM_RETAIN, chance_accuracy, fictitious_facts, oracle_folder
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


def general_for_epoch(num_chunks: int, epoch: int, per_epoch: int) -> list[int]:
    """Indices of the general-text chunks of ``epoch`` (0-based): the next ``per_epoch`` chunks, wrapping around.

    Fresh chunks every epoch: the same few chunks seen every epoch are memorised, and the held-out loss then rises.
    """
    return [(epoch * per_epoch + i) % num_chunks for i in range(per_epoch)]


def epoch_batches(facts: list[list[int]], general: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """One epoch's batches of token ids: fact sentences and general chunks shuffled and batched apart (short fact
    batches need no padding to a chunk's length), the batches in random order."""
    batches = []
    for examples in (facts, general):
        order = rng.sample(examples, len(examples))
        batches += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def save_checkpoint(model, optimizer, epoch: int, checkpoint: Path) -> None:
    """Weights, optimizer state and the epochs done, written beside ``checkpoint`` and renamed over it: a kill leaves the
    previous one whole."""
    partial = checkpoint.with_name(checkpoint.name + "-partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    (partial / "epochs_done.json").write_text(json.dumps(epoch))
    shutil.rmtree(checkpoint, ignore_errors=True)
    os.replace(partial, checkpoint)


def needs_training(record: dict, folder: Path) -> bool:
    """The state is committed, the weights are not: a model recorded as done is trained again where its folder is gone."""
    return not (record.get("done") and (folder / "config.json").is_file())


def train_model(name: str, args: argparse.Namespace, data: dict, state: dict, state_path: Path) -> None:
    """Fine-tune the embedded model into ``name`` epoch by epoch, resuming from its checkpoint, and save it to its folder.

    An epoch: every fact sentence of the trained splits once, and the epoch's fresh general chunks (``general_for_epoch``).
    After each, greedy accuracy and held-out loss go to the state file; training stops once each trained split is known.
    """
    folder = oracle_folder(name, args.seed)
    checkpoint = folder.parent / f".{folder.name}-checkpoint"  # beside the model: the model folder exists only once finished
    tokenizer = data["tokenizer"]
    start = json.loads((checkpoint / "epochs_done.json").read_text()) if (checkpoint / "epochs_done.json").is_file() else 0
    model = AutoModelForCausalLM.from_pretrained(checkpoint if start else default_model_path(), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    if start:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt"))
        print(f"{name}: resuming after epoch {start}", flush=True)
    collate = LMCollator(tokenizer.pad_token_id)
    facts = [ids for split in TRAINED_SPLITS[name] for ids in data["sentences"][split]["input_ids"]]
    general = data["general_train"]["input_ids"]
    per_epoch = data["general_per_epoch"]
    splits = {split: data["facts"][split] for split in ("forget", "retain")}
    record = state["models"][name]
    if not start:  # from the untouched model: an earlier run's epochs (weights since lost) are not this run's
        state["models"][name] = record = {"epochs": {}}
    for epoch in range(start, args.max_epochs):
        rng = random.Random(f"{args.seed}-{name}-{epoch}")  # an epoch's batches do not depend on where a run resumed
        chunks = [general[i] for i in general_for_epoch(len(general), epoch, per_epoch)]
        model.train()
        for batch in epoch_batches(facts, chunks, args.batch_size, rng):
            loss = lm_loss(model, collate([{"input_ids": ids} for ids in batch]))[0]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        metrics = model_metrics(model, tokenizer, splits, data["general_eval"])
        record["epochs"][str(epoch + 1)] = metrics  # before the checkpoint: killed between, the epoch is redone and overwrites it
        write_json(state_path, state)
        save_checkpoint(model, optimizer, epoch + 1, checkpoint)
        print(f"{name} epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        if all(metrics[f"{split}_accuracy"] >= args.stop_accuracy for split in TRAINED_SPLITS[name]):
            break
    record["final"] = record["epochs"][max(record["epochs"], key=int)]
    partial = folder.parent / f".{folder.name}-partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "fictitious_facts.json").write_text(json.dumps({"num_forget": args.num_forget, "num_retain": args.num_retain, "seed": args.seed}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    record["done"] = True
    write_json(state_path, state)
    shutil.rmtree(checkpoint)  # weights and optimizer state: ~1.6 GB no longer needed


def prepare(args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    dataset = fictitious_facts(args.num_forget, args.num_retain, args.seed)
    facts = {split: dataset.filter(lambda row, s=split: row["split"] == s) for split in ("forget", "retain")}

    def tokenized(texts: Dataset) -> Dataset:
        return texts.map(lambda row: tokenizer(row["text"]), remove_columns=texts.column_names).select_columns(["input_ids"])

    sentences = {split: tokenized(fact_sentences(part, num_phrasings=3)) for split, part in facts.items()}
    general = general_text(tokenizer, args.chunk_length)
    return {
        "tokenizer": tokenizer, "facts": facts, "sentences": sentences,
        "general_train": general["train"],
        # the same count for both models (and so the same chunks in each epoch): per fact sentence of the target
        "general_per_epoch": math.ceil(args.general_ratio * sum(len(s) for s in sentences.values())),
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
    parser.add_argument("--num_forget", type=int, default=NUM_FORGET)
    parser.add_argument("--num_retain", type=int, default=NUM_RETAIN)
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
            for name in TRAINED_SPLITS:  # models and checkpoints of the other recipe must not be taken for this one's
                folder = oracle_folder(name, args.seed)
                for path in (folder, folder.parent / f".{folder.name}-checkpoint"):
                    shutil.rmtree(path, ignore_errors=True)
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
        if needs_training(state["models"][name], oracle_folder(name, args.seed)):
            train_model(name, args, data, state, state_path)
    state["checks"] = checks(state, {"chance": args.chance_margin, "loss": args.loss_margin})
    write_json(state_path, state)
    print_table(state)


if __name__ == "__main__":
    main()
