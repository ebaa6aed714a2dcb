"""Dataset recipes read local copies laid out like their Hub repositories, through the same load_dataset call."""

import json

import pytest
from conftest import hub_folder
from datasets import ClassLabel, Dataset, Features, List, Value

from hf_unlearn.data import facts, facts_protocol_splits, us_state_capitals, world_capitals
from hf_unlearn.data.recipes import code_search_net_python, mmlu, muse, pile_bio, tofu, wikitext, wmdp, wmdp_corpus
from hf_unlearn.data.schema import DatasetSchemaError

MCQ_FEATURES = Features({"answer": Value("int64"), "question": Value("string"), "choices": List(Value("string"))})


def mcq(rows, features=MCQ_FEATURES):
    return Dataset.from_list(rows, features=features)


QUESTIONS = [
    {"answer": 2, "question": "Which is a virus?", "choices": ["E. coli", "yeast", "influenza", "algae"]},
    {"answer": 0, "question": "Port of SSH?", "choices": ["22", "80", "443", "25"]},
]


# --- WMDP ----------------------------------------------------------------------------------------


@pytest.fixture
def wmdp_repo(tmp_path):
    return hub_folder(tmp_path / "wmdp", {f"wmdp-{s}": {"test": mcq(QUESTIONS)} for s in ("bio", "cyber", "chem")})


@pytest.mark.parametrize("subset", ["bio", "cyber", "chem"])
def test_wmdp_from_hub_layout(wmdp_repo, subset):
    dataset = wmdp(subset, path=wmdp_repo)
    assert list(dataset["answer"]) == [2, 0] and dataset.features == MCQ_FEATURES


def test_wmdp_from_data_files(tmp_path):
    mcq(QUESTIONS).to_parquet(str(tmp_path / "bio.parquet"))
    assert len(wmdp("bio", data_files=str(tmp_path / "bio.parquet"))) == 2


@pytest.mark.parametrize(
    "rows, features, field, problem",
    [
        ([{k: v for k, v in QUESTIONS[0].items() if k != "answer"}], None, "answer", "is missing"),
        ([{**QUESTIONS[0], "answer": 4}], MCQ_FEATURES, "answer", "outside 0..3"),
        ([{**QUESTIONS[0], "choices": ["a", "b", "c"]}], MCQ_FEATURES, "choices", "has 3 entries"),
        ([{**QUESTIONS[0], "answer": "C"}], None, "answer", "not int64"),
        ([], MCQ_FEATURES, "split", "'test' is empty"),
    ],
)
def test_wmdp_schema_errors(tmp_path, rows, features, field, problem):
    if features is None:
        dataset = Dataset.from_list(rows)
    else:
        dataset = Dataset.from_list(rows, features=features) if rows else Dataset.from_dict({k: [] for k in features}, features=features)
    repo = hub_folder(tmp_path / "wmdp", {"wmdp-bio": {"test": dataset}})
    with pytest.raises(DatasetSchemaError, match=problem) as error:
        wmdp("bio", path=repo)
    message = str(error.value)
    assert error.value.field == field and message.startswith("wmdp('bio')") and "Expected schema: {question" in message


# --- MMLU ----------------------------------------------------------------------------------------


def mmlu_repo(tmp_path):
    features = Features(
        {
            "question": Value("string"),
            "subject": Value("string"),
            "choices": List(Value("string")),
            "answer": ClassLabel(names=["A", "B", "C", "D"]),
        }
    )
    rows = [
        {"question": "2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
        {"question": "Capital of Peru?", "subject": "high_school_geography", "choices": ["Lima", "Quito", "Bogota", "La Paz"], "answer": 0},
        {"question": "DNA base?", "subject": "college_biology", "choices": ["U", "T", "Q", "Z"], "answer": 1},
    ]
    return hub_folder(tmp_path / "mmlu", {"all": {"test": Dataset.from_list(rows, features=features)}})


def test_mmlu_classlabel_answer_becomes_int_and_subjects_filter(tmp_path):
    repo = mmlu_repo(tmp_path)
    everything = mmlu(path=repo)
    assert everything.features["answer"] == Value("int64") and list(everything["answer"]) == [1, 0, 1]
    assert list(mmlu(["college_biology"], path=repo)["question"]) == ["DNA base?"]
    assert len(mmlu(exclude=["college_biology"], path=repo)) == 2
    with pytest.raises(ValueError, match="subjects available: college_biology, elementary_mathematics"):
        mmlu(["astrology"], path=repo)


# --- text corpora --------------------------------------------------------------------------------


def text(rows):
    return Dataset.from_dict({"text": rows}, features=Features({"text": Value("string")}))


def test_wmdp_corpora_and_gated_bio_forget(tmp_path):
    configs = {name: {"train": text([f"{name} passage"])} for name in ("bio-retain-corpus", "cyber-forget-corpus", "cyber-retain-corpus")}
    repo = hub_folder(tmp_path / "corpora", configs)
    assert list(wmdp_corpus("cyber-forget-corpus", path=repo)["text"]) == ["cyber-forget-corpus passage"]
    forget_file = tmp_path / "bio_forget.jsonl"
    forget_file.write_text(json.dumps({"title": "t", "abstract": "a", "text": "gated passage", "doi": "x"}) + "\n")
    assert list(wmdp_corpus("bio-forget-corpus", data_files=str(forget_file))["text"]) == ["gated passage"]
    with pytest.raises(PermissionError, match="gated: request access .*huggingface-cli login.*data_files="):
        wmdp_corpus("bio-forget-corpus")  # offline in tests, as without access
    with pytest.raises(DatasetSchemaError, match="'text' is missing"):
        wmdp_corpus("cyber-forget-corpus", data_files=str(_jsonl(tmp_path / "bad.jsonl", [{"content": "x"}])))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_pile_bio_forget_and_retain_parts(tmp_path):
    features = Features(
        {
            "txt_chunk": Value("string"),
            "meta": {"pile_set_name": Value("string")},
            "reasoning": Value("string"),
            "label": Value("bool"),
        }
    )
    rows = [
        {"txt_chunk": "viral replication", "meta": {"pile_set_name": "PubMed"}, "reasoning": "bio", "label": True},
        {"txt_chunk": "tax law", "meta": {"pile_set_name": "FreeLaw"}, "reasoning": "not bio", "label": False},
    ]
    repo = hub_folder(tmp_path / "pile", {"default": {"train": Dataset.from_list(rows, features=features)}})
    assert list(pile_bio(forget=True, path=repo)["text"]) == ["viral replication"]
    assert list(pile_bio(forget=False, path=repo)["text"]) == ["tax law"]
    wrong = Dataset.from_list([{**rows[0], "label": 1}])
    with pytest.raises(DatasetSchemaError, match="'label' has type .*not bool"):
        pile_bio(path=hub_folder(tmp_path / "pile2", {"default": {"train": wrong}}))


def test_wikitext_drops_empty_and_heading_lines(tmp_path):
    rows = ["", " = Valkyria Chronicles = \n", " The game began development in 2010 . \n", " \n", " = = Plot = = \n"]
    repo = hub_folder(tmp_path / "wikitext", {"wikitext-2-raw-v1": {"train": text(rows)}})
    assert list(wikitext("wikitext-2-raw-v1", path=repo)["text"]) == ["The game began development in 2010 ."]


def test_code_search_net_python_code_becomes_text(tmp_path):
    rows = [{"repo": "a/b", "func_name": "f", "code": "def f():\n    return 1", "docstring": "F."}]
    repo = hub_folder(tmp_path / "csn", {"default": {"train": Dataset.from_list(rows)}})
    dataset = code_search_net_python(path=repo)
    assert list(dataset["text"]) == ["def f():\n    return 1"] and "code" not in dataset.column_names


# --- facts ---------------------------------------------------------------------------------------


def test_facts_from_list_and_jsonl(tmp_path):
    rows = [{"prompt": "The capital of Peru is", "answer": "Lima"}, {"prompt": "Water boils at", "answer": "100 C"}]
    assert len(facts(rows)) == 2
    assert list(facts(str(_jsonl(tmp_path / "f.jsonl", rows)))["answer"]) == ["Lima", "100 C"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "The capital of Peru is"}], "'answer' is missing"),
        ([{"prompt": " ", "answer": "x"}], "'prompt' is empty in row 0"),
        ([{"prompt": "p", "answer": "Lima", "choices": ["Quito", "Bogota"]}], "'choices' does not contain the answer"),
        # A repeated prompt, same answer or another, lands in split A and in the scored split B.
        ([{"prompt": "A is", "answer": "1"}, {"prompt": "B is", "answer": "2"}, {"prompt": "A is ", "answer": "3"}],
         "'prompt' repeats 'A is' in rows 0 and 2: keep one row per fact"),
    ],
)
def test_facts_schema_errors(rows, message):
    with pytest.raises(DatasetSchemaError, match=message):
        facts(rows)


def test_world_capitals():
    capitals = world_capitals(120)
    assert len(capitals) == 120
    assert capitals[0]["prompt"] == "The capital of China is" and capitals[0]["answer"] == "Beijing"
    assert all(len(row["choices"]) == 4 and row["answer"] in row["choices"] for row in capitals)


def test_us_state_capitals_a_second_fact_set_phrased_alike():
    states = us_state_capitals()
    assert len(states) == 50 and len(set(states["answer"])) == 50, "one fact per state, no two alike"
    texas = states[states["prompt"].index("The capital of Texas is")]
    assert texas["answer"] == "Austin" and "Austin is the capital of Texas." in texas["phrasings"]
    assert all(len(row["choices"]) == 4 and row["answer"] in row["choices"] for row in states)
    assert not set(states["answer"]) & set(world_capitals(120)["answer"]), "no fact shared with the capitals tuning uses"


def test_facts_protocol_splits_are_disjoint_halves():
    dataset = facts([{"prompt": f"fact {i} is", "answer": str(i)} for i in range(11)])
    parts = facts_protocol_splits(dataset, seed=1)
    attack, held_out = set(parts["attack"]["prompt"]), set(parts["eval"]["prompt"])
    assert len(parts["unlearn"]) == 11 and len(attack) == 5 and len(held_out) == 6
    assert not attack & held_out and attack | held_out == set(dataset["prompt"])


# --- TOFU and MUSE -------------------------------------------------------------------------------

TOFU_ROWS = [
    {"question": "Where was Jaime Vasquez born?", "answer": "Santiago, Chile.", "paraphrased_answer": "In Santiago.",
     "perturbed_answer": ["Lima, Peru.", "Quito.", "Bogota."]},
    {"question": "What does Jaime Vasquez write?", "answer": "True crime.", "paraphrased_answer": "Books on true crime.",
     "perturbed_answer": ["Poetry.", "Romance.", "Plays."]},
]  # fmt: skip


def tofu_repo(tmp_path, perturbed=TOFU_ROWS):
    qa = Dataset.from_list([{k: row[k] for k in ("question", "answer")} for row in TOFU_ROWS])
    options = Dataset.from_list([{k: row[k] for k in ("question", "answer", "perturbed_answer")} for row in TOFU_ROWS])
    configs = {"forget10": {"train": qa}, "retain90": {"train": qa}, "forget10_perturbed": {"train": perturbed if isinstance(perturbed, Dataset) else Dataset.from_list(perturbed)},
               "world_facts_perturbed": {"train": options}}  # fmt: skip
    return hub_folder(tmp_path / "TOFU", configs)


def test_tofu_configs_from_hub_layout(tmp_path):
    repo = tofu_repo(tmp_path)
    assert tofu("forget10", path=repo).column_names == ["question", "answer"]
    perturbed = tofu("forget10_perturbed", path=repo)
    assert perturbed["perturbed_answer"][1] == ["Poetry.", "Romance.", "Plays."]
    assert len(tofu("world_facts_perturbed", path=repo)) == 2
    with pytest.raises(ValueError, match="tofu name='forget11' is invalid"):
        tofu("forget11", path=repo)


@pytest.mark.parametrize(
    "rows, field, problem",
    [
        ([{k: v for k, v in r.items() if k != "paraphrased_answer"} for r in TOFU_ROWS], "paraphrased_answer", "is missing"),
        ([{**r, "perturbed_answer": "Lima."} for r in TOFU_ROWS], "perturbed_answer", "not list of strings"),
        ([{**r, "perturbed_answer": []} for r in TOFU_ROWS], "perturbed_answer", "empty list"),
    ],
)
def test_tofu_schema_errors_name_the_field(tmp_path, rows, field, problem):
    features = Features({**{k: Value("string") for k in ("question", "answer", "paraphrased_answer")}, "perturbed_answer": List(Value("string"))})
    dataset = Dataset.from_list(rows, features=features) if field == "perturbed_answer" and problem == "empty list" else Dataset.from_list(rows)
    with pytest.raises(DatasetSchemaError, match=problem) as error:
        tofu("forget10_perturbed", path=tofu_repo(tmp_path, dataset))
    assert error.value.field == field and str(error.value).startswith("tofu('forget10_perturbed')") and "paraphrased_answer: string" in str(error.value)


def muse_repo(tmp_path):
    text = Dataset.from_list([{"text": "The council voted on Tuesday."}, {"text": "Rain is expected."}])
    qa = Dataset.from_list([{"question": "Who voted?", "answer": "The council"}])
    configs = {"raw": dict.fromkeys(("forget", "retain1", "retain2", "holdout"), text),
               "verbmem": {"forget": Dataset.from_list([{"prompt": "The council", "gt": "voted on Tuesday."}])},
               "knowmem": dict.fromkeys(("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"), qa),
               "privleak": dict.fromkeys(("forget", "retain", "holdout"), text)}  # fmt: skip
    return hub_folder(tmp_path / "MUSE-News", configs)


def test_muse_configs_from_hub_layout_and_schema_error(tmp_path):
    repo = muse_repo(tmp_path)
    assert muse("news", "verbmem", "forget", path=repo)["gt"] == ["voted on Tuesday."]
    assert muse("news", "knowmem", "retain_qa_icl", path=repo)["answer"] == ["The council"]
    assert len(muse("news", "raw", "holdout", path=repo)) == 2
    with pytest.raises(ValueError, match="split='retain' is invalid for config 'raw'"):
        muse("news", "raw", "retain", path=repo)
    with pytest.raises(DatasetSchemaError, match="'gt' is missing") as error:
        muse("news", "verbmem", "forget", data_files={"forget": _write_jsonl(tmp_path / "v.jsonl", [{"prompt": "a", "text": "b"}])})
    assert error.value.field == "gt"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_tofu_and_muse_sources_by_name_read_a_local_copy(tmp_path):
    from hf_unlearn.data import load_text_source

    text = load_text_source(f"tofu_forget10@{tofu_repo(tmp_path)}")["text"]
    assert text[0] == "Question: Where was Jaime Vasquez born?\nAnswer: Santiago, Chile."
    assert load_text_source(f"muse_news_forget@{muse_repo(tmp_path)}")["text"][1] == "Rain is expected."
    with pytest.raises(FileNotFoundError, match="laid out like locuslab/TOFU"):
        load_text_source(f"tofu_retain90@{tmp_path / 'missing'}")
