import json

import pytest
from conftest import char_tokenizer
from datasets import Dataset

from hf_unlearn.data import (
    LMCollator,
    chunk_tokens,
    prepare_lm_dataset,
    pydoc_prose,
    python_stdlib_source,
    split_dataset,
)
from hf_unlearn.data.sources import DataArguments, build_unlearning_data, load_text_source


def test_chunks_have_fixed_length_and_drop_tails():
    tokenizer = char_tokenizer()
    texts = Dataset.from_dict({"text": ["a" * 25, "b" * 9, "c" * 10]})
    chunks = chunk_tokens(texts, tokenizer, chunk_length=10)
    assert [len(ids) for ids in chunks["input_ids"]] == [10, 10, 10]  # 25 -> 2 chunks (tail 5 dropped), 9 -> none
    assert tokenizer.decode(chunks[2]["input_ids"]).replace(" ", "") == "c" * 10


def test_split_is_deterministic_disjoint_and_complete():
    data = Dataset.from_dict({"i": list(range(20))})
    a, b = split_dataset(data, seed=3), split_dataset(data, seed=3)
    assert {k: list(v["i"]) for k, v in a.items()} == {k: list(v["i"]) for k, v in b.items()}
    assert [len(a[k]) for k in ("unlearn", "attack", "eval")] == [10, 5, 5]
    assert sorted(list(a["unlearn"]["i"]) + list(a["attack"]["i"]) + list(a["eval"]["i"])) == list(range(20))
    assert list(split_dataset(data, seed=4)["unlearn"]["i"]) != list(a["unlearn"]["i"])


def test_split_rejects_empty_parts():
    with pytest.raises(ValueError, match="leaves .* empty"):
        split_dataset(Dataset.from_dict({"i": [1, 2]}))


def test_collator_masks_padding_in_labels():
    batch = LMCollator(pad_token_id=0)([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, 9, -100]]


def test_pre_tokenized_dataset_is_kept_and_one_token_rows_dropped():
    data = Dataset.from_dict({"input_ids": [[1, 2, 3], [4]], "extra": ["x", "y"]})
    prepared = prepare_lm_dataset(data, None, name="forget")
    assert prepared.column_names == ["input_ids"] and list(prepared["input_ids"]) == [[1, 2, 3]]


def test_text_column_must_hold_strings():
    with pytest.raises(ValueError, match="column 'text' of the forget dataset must hold strings"):
        prepare_lm_dataset(Dataset.from_dict({"text": [1, 2]}), char_tokenizer(), name="forget")


def test_offline_sources_exist():
    source = python_stdlib_source()
    assert len(source) > 100 and any(p == "json/decoder.py" for p in source["path"])
    prose = pydoc_prose()
    assert len(prose) > 50 and all(not line.startswith(" ") for text in prose["text"] for line in text.split("\n"))


def test_build_unlearning_data_from_local_files(tmp_path):
    forget_file, retain_file = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    # Every chunk distinct, so overlap between splits can only come from a splitting error.
    forget_file.write_text("".join(json.dumps({"text": " ".join(f"s{i}.{j}" for j in range(20))}) + "\n" for i in range(40)))
    retain_file.write_text("".join(json.dumps({"text": " ".join(f"p{i}.{j}" for j in range(20))}) + "\n" for i in range(40)))
    args = DataArguments(forget_source=str(forget_file), retain_source=str(retain_file), chunk_length=20)
    data = build_unlearning_data(args, char_tokenizer())
    unlearn, attack, held_out = (set(map(tuple, d["input_ids"])) for d in (data["unlearn"], data["attack"], data["eval"]["forget"]))
    assert unlearn and attack and held_out
    assert not unlearn & attack and not unlearn & held_out and not attack & held_out
    assert len(data["retain"]) > 0 and len(data["eval"]["retain"]) > 0


def test_missing_local_file_is_named():
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        load_text_source("nope.jsonl")


def test_held_out_chunks_are_shuffled_across_documents():
    """Unshuffled, max_eval_examples=64 took the first one or two documents' chunks: a held-out loss of two files."""
    from hf_unlearn.data.processing import unlearning_splits

    tokenizer = char_tokenizer()
    forget = Dataset.from_dict({"text": [f"{i}" * 200 for i in range(8)]})  # 8 documents of 20 chunks each
    retain = Dataset.from_dict({"text": [f"{chr(97 + i)}" * 200 for i in range(8)]})
    splits = unlearning_splits(forget, retain, tokenizer, chunk_length=10)
    for name in ("forget_eval", "retain_eval"):
        first = [tokenizer.decode(ids[:1]) for ids in splits[name]["input_ids"][:8]]
        assert len(set(first)) > 1, f"{name}'s first chunks all come from one document"


def test_retain_text_that_is_the_forget_text_is_refused(tmp_path):
    """Both eval losses were 10.806950...: the retain split was the forget split."""
    forget_file, copy_file = tmp_path / "forget.jsonl", tmp_path / "copy.jsonl"
    forget_file.write_text("".join(json.dumps({"text": " ".join(f"s{i}.{j}" for j in range(20))}) + "\n" for i in range(40)))
    copy_file.write_text(forget_file.read_text())
    with pytest.raises(ValueError, match=r"retain_source='.*forget.jsonl' is the forget source: the retain step would train on forget text"):
        DataArguments(forget_source=str(forget_file), retain_source=str(tmp_path / "." / "forget.jsonl"))
    args = DataArguments(forget_source=str(forget_file), retain_source=str(copy_file), chunk_length=20)
    with pytest.raises(ValueError, match=r"retain_source='.*copy.jsonl' holds 40 documents of forget_source='.*forget.jsonl'"):
        build_unlearning_data(args, char_tokenizer())
