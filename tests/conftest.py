"""Shared fixtures: a character-level tokenizer and tiny random-initialised causal LMs."""

from __future__ import annotations

import gc
import importlib
import json
import os
import socket
import string
from pathlib import Path
from typing import TYPE_CHECKING

# Tests never reach the Hub: local fixtures go through the same load_dataset calls, offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from tokenizers import Regex, Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

if TYPE_CHECKING:
    from datasets import Dataset

# A method of one's own through the method tests, which read the registry: its modules, imported (so registered)
# before collection. `HF_UNLEARN_TEST_METHODS=my_package.my_method pytest tests/test_methods.py -k my_method`
for _module in filter(None, os.environ.get("HF_UNLEARN_TEST_METHODS", "").split(",")):
    importlib.import_module(_module)

# Under pytest-xdist (`make test` runs a worker per core) each worker takes its share of the cores: more threads
# than cores slow every worker down.
torch.set_num_threads(max(1, min(2, torch.get_num_threads() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>"]
ANSWER_LETTERS = [" A", " B", " C", " D"]  # one token each, as in real tokenizers, for MCQ scoring


def char_tokenizer(with_pad: bool = True) -> PreTrainedTokenizerFast:
    """One token per printable character (and per answer letter " A".." D"): a tiny vocabulary."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + list(string.printable) + ANSWER_LETTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r" [A-D]|[\s\S]"), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")
    if with_pad:
        tokenizer.pad_token = "<pad>"
    return tokenizer


def tiny_llama(vocab_size: int, seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    settings = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
    )  # fmt: skip
    config = LlamaConfig(**{**settings, **overrides})
    return LlamaForCausalLM(config)


def free_port() -> int:
    """A port no process holds now: for a command launching several processes while other tests (xdist workers) may."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes: equal digests, bit-identical values."""
    import hashlib

    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    return char_tokenizer()


@pytest.fixture
def model(tokenizer) -> LlamaForCausalLM:
    return tiny_llama(len(tokenizer))


FORGET_TEXTS = [f"vault {i} opens with code {(i * 7919) % 10000:04d} only" for i in range(24)]
RETAIN_TEXTS = [
    f"{name} reads {thing} every {day}."
    for name in ("Ann", "Bob", "Cleo", "Dan")
    for thing in ("books", "maps", "poems")
    for day in ("morning", "evening", "sunday")
]


@pytest.fixture
def forget_dataset():
    from datasets import Dataset

    return Dataset.from_dict({"text": FORGET_TEXTS})


@pytest.fixture
def retain_dataset():
    from datasets import Dataset

    return Dataset.from_dict({"text": RETAIN_TEXTS})


def unlearn_config(output_dir, config_class=None, **overrides):
    from hf_unlearn import MUDMANConfig

    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    settings.update(overrides)
    return (config_class or MUDMANConfig)(**settings)


def full_batch(dataset, tokenizer):
    from hf_unlearn.data import LMCollator, prepare_lm_dataset

    prepared = prepare_lm_dataset(dataset, tokenizer, name="test")
    return LMCollator(tokenizer.pad_token_id)([prepared[i] for i in range(len(prepared))])


@pytest.fixture(scope="session")
def memorised():
    """A tiny Llama trained until it reproduces both text sets almost perfectly (copy it before training it):
    (model, tokenizer, forget dataset, retain dataset, (forget batch, retain batch))."""
    from datasets import Dataset

    from hf_unlearn.forward import lm_loss

    tokenizer = char_tokenizer()
    forget, retain = Dataset.from_dict({"text": FORGET_TEXTS}), Dataset.from_dict({"text": RETAIN_TEXTS})
    batches = full_batch(forget, tokenizer), full_batch(retain, tokenizer)
    model = tiny_llama(len(tokenizer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        sum(lm_loss(model, batch)[0] for batch in batches).backward()
        optimizer.step()
    return model, tokenizer, forget, retain, batches



def write_local_files(folder: Path):
    """A tiny model folder and forget / retain JSONL files, as a user would have them, and the ``DataArguments`` naming them."""
    from hf_unlearn.data import DataArguments

    model_dir = folder / "tiny"
    tiny_llama(len(char_tokenizer())).save_pretrained(model_dir)
    char_tokenizer().save_pretrained(model_dir)
    for name, texts in (("forget", FORGET_TEXTS * 4), ("retain", RETAIN_TEXTS)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return model_dir, DataArguments(forget_source=str(folder / "forget.jsonl"), retain_source=str(folder / "retain.jsonl"), chunk_length=16)


def hub_folder(root, configs: dict[str, dict[str, Dataset]]):
    """Write ``root`` like a Hub dataset repo: ``<config>/<split>-00000-of-00001.parquet`` and a README
    whose YAML ``configs`` section maps configs and splits to those files (as cais/wmdp's does)."""
    card = {"configs": []}
    for config, splits in configs.items():
        folder = "data" if config == "default" else config
        (root / folder).mkdir(parents=True, exist_ok=True)
        files = []
        for split, dataset in splits.items():
            dataset.to_parquet(str(root / folder / f"{split}-00000-of-00001.parquet"))
            files.append({"split": split, "path": f"{folder}/{split}-*"})
        card["configs"].append({"config_name": config, "data_files": files})
    (root / "README.md").write_text("---\n" + yaml.safe_dump(card) + "---\n")
    return str(root)


def pytest_collection_finish(session: pytest.Session) -> None:
    """transformers' ``Trainer.train()`` runs ``gc.collect()`` (accelerate's ``free_memory``), 0.5 s over the ~500,000
    objects the imports leave in a test process; they are never garbage, so once the tests are imported they are
    frozen out of every collection (``gc.freeze``, CPython's advice for long-lived state)."""
    gc.freeze()
