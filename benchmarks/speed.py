"""Benchmark: speed and memory of the methods against their compute floor.

In one process and one run, so ratios are fair on a noisy machine:

- each method's ``UnlearnTrainer`` step (timed by a callback around the Trainer's own step) divided
  by its *floor*: the forward+backward passes it cannot avoid, timed alone with plain torch on batches
  like the Trainer's, right after every step (``PairedFloor``), so that the machine's drift cancels
  in each step's ratio; the median over steps after warm-up (MUDMAN with ``neg_cross_entropy``: the
  retain batch at the weights and the forget batch at the adversary; GradDiff: both batches; NPO:
  both, plus the reference forward; CIR: the forget pass to its last loss layer and the retain
  passes, timed after its run);
- CIR's seconds per unlearned fact (its steps on the capitals, evaluation excluded);
- the relearning attack's step divided by a plain ``Trainer`` step on the same data, and the quick
  attack suite's total time;
- peak memory (``--memory``): MUDMAN against a plain fine-tune of the same target modules, each in a
  fresh subprocess, the peak reset after data preparation, beside the method's inherent state
  (adversary + retain EMA: two fp32 copies of the target weights);
- a scaling table (``--scaling``): MUDMAN's step time and memory against tokens per batch and the
  target modules (``gate_proj``, all MLP, all linear).

Writes JSON and markdown to ``--output_dir``; the machine (threads, device, dtype) is part of both.

    python benchmarks/speed.py                      # CPU, SmolLM2-135M, fp32
    python benchmarks/speed.py --device cuda --dtype bfloat16 --model llama-1b   # GPU, a Llama-3.2-1B-sized model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from hf_unlearn import (
    AttackSuite,
    CIRConfig,
    GradDiffConfig,
    MUDMANConfig,
    NPOConfig,
    RelearnAttackConfig,
    RelearnAttackTrainer,
    UnlearnTrainer,
    default_model_path,
)
from hf_unlearn.data import DataArguments, LMCollator, build_unlearning_data
from hf_unlearn.environment import package_versions
from hf_unlearn.forward import lm_outputs, module_output, stop_after
from hf_unlearn.losses import cross_entropy
from hf_unlearn.targets import resolve_target_modules

TARGETS = {"gate_proj": ["gate_proj"], "all_mlp": ["gate_proj", "up_proj", "down_proj"], "all_linear": ["all_linear"]}


class StepTimer(TrainerCallback):
    """Wall time of every Trainer step (the method's update, the optimizer, the bookkeeping)."""

    def __init__(self, device: str):
        self.device, self.times, self.start = device, [], 0.0

    def sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self.sync()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        self.times.append(time.perf_counter() - self.start)


def median_after_warmup(times: list[float], warmup: int) -> float:
    return statistics.median(times[warmup:]) if len(times) > warmup else statistics.median(times)


def load_model(args, path) -> torch.nn.Module:
    """The model in fp32: ``--dtype bfloat16`` is bf16 autocast around fp32 weights, as the trainers train (see main)."""
    dtype = torch.float32
    if args.model == "llama-1b":  # random weights are fine for speed: Llama-3.2-1B's shape
        config = AutoConfig.for_model(
            "llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, max_position_embeddings=4096, tie_word_embeddings=True,
        )  # fmt: skip
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=dtype).to(args.device)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(args.device)


def data_for(args, tokenizer, tokens: int):
    """Forget / retain chunks of ``tokens`` tokens (the MUDMAN paper: 100)."""
    data_args = DataArguments(max_forget_documents=80, chunk_length=tokens, max_eval_examples=8)
    return build_unlearning_data(data_args, tokenizer)


def timed_floor(items: list, passes, device: str, repeats: int) -> float:
    """Median seconds of ``passes(item)`` (plain torch), cycling over ``items``, after one warm-up."""
    times = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        passes(items[i % len(items)])
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def on(device: str, batch: dict) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def ce_pass(model, batch, params):
    loss = cross_entropy(lm_outputs(model, batch).logits, batch["labels"])
    torch.autograd.grad(loss, params)


class PairedFloor(TrainerCallback):
    """After every Trainer step, the method's floor timed with plain torch on the same model and batches like
    the Trainer's: each step is paired with a floor measured seconds later, so a drift of the machine's speed
    (other tenants, clock changes) cancels in the step / floor ratio instead of landing in it."""

    def __init__(self, pairs: list, device: str, reference_forward: bool):
        self.pairs, self.device, self.reference_forward, self.times = pairs, device, reference_forward, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        params = [p for p in model.parameters() if p.requires_grad]  # the method's target weights
        forget, retain = (on(self.device, batch) for batch in self.pairs[len(self.times) % len(self.pairs)])
        started = time.perf_counter()
        if self.reference_forward:  # NPO's reference forward
            with torch.no_grad():
                lm_outputs(model, forget)
        ce_pass(model, retain, params)  # the retain batch, then the forget batch: a gradient of each
        ce_pass(model, forget, params)
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - started)


def method_step(args, method: str, config_class, settings: dict, path, tokenizer, data, reference_forward: bool) -> dict:
    """A method's Trainer step against its paired floor (``PairedFloor``): medians over the steps after warm-up."""
    model = load_model(args, path)
    collate = LMCollator(tokenizer.pad_token_id)
    n = args.batch_size
    pairs = [(collate([data["unlearn"][j] for j in range(i * n, (i + 1) * n)]), collate([data["retain"][j] for j in range(i * n, (i + 1) * n)]))
             for i in range(args.steps)]  # fmt: skip
    timer, floor = StepTimer(args.device), PairedFloor(pairs, args.device, reference_forward)
    config = config_class(
        output_dir=f"{args.output_dir}/runs/{method}", max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        save_strategy="no", report_to="none", logging_steps=10**6, disable_tqdm=True, seed=0, use_cpu=args.device == "cpu",
        bf16=args.dtype == "bfloat16", max_retain_loss_ratio=0, **settings,
    )  # fmt: skip
    trainer = UnlearnTrainer(model, config, forget_dataset=data["unlearn"], retain_dataset=data["retain"], processing_class=tokenizer,
                             callbacks=[timer, floor])  # fmt: skip
    trainer.train()
    ratios = [step / passes for step, passes in zip(timer.times, floor.times)]
    return {"step_s": median_after_warmup(timer.times, args.warmup), "floor_s": median_after_warmup(floor.times, args.warmup),
            "step_over_floor": median_after_warmup(ratios, args.warmup), "passes_per_step": trainer.procedure.passes / max(1, len(timer.times))}  # fmt: skip


def cir_floor(args, model, batches_forget, batches_retain) -> float:
    """CIR's unavoidable passes: forget forward to its last loss layer (original, then current) + backward; the
    retain forward to layer 12 (original, current) + backward."""
    layers = model.model.layers
    params = [p for n, p in model.named_parameters() if "mlp" in n and int(n.split(".")[2]) <= 11]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    def passes(pair):
        forget, retain = on(args.device, pair[0]), on(args.device, pair[1])
        with torch.no_grad(), stop_after(layers[11].mlp):
            lm_outputs(model, forget)
        out = []
        handle = layers[11].mlp.register_forward_hook(lambda mod, a, o: out.append(o))
        with stop_after(layers[11].mlp):
            lm_outputs(model, forget)
        handle.remove()
        torch.autograd.grad(out[0].float().pow(2).mean(), params)
        with torch.no_grad():
            module_output(model, retain, layers[11])
        torch.autograd.grad(module_output(model, retain, layers[11]).float().pow(2).mean(), params)

    return timed_floor(list(zip(batches_forget, batches_retain)), passes, args.device, args.repeats)


def attack_ratio(args, path, tokenizer, data) -> dict[str, float]:
    """The relearning attack's step against a plain Trainer step on the same data, and the quick suite's time."""
    common = dict(max_steps=args.steps, per_device_train_batch_size=args.batch_size, report_to="none", save_strategy="no",
                  logging_steps=10**6, disable_tqdm=True, seed=0, use_cpu=args.device == "cpu", learning_rate=1e-4,
                  optim="adamw_torch", max_grad_norm=1.0, lr_scheduler_type="constant")  # fmt: skip
    timer = StepTimer(args.device)
    attack = RelearnAttackTrainer(
        load_model(args, path), RelearnAttackConfig(output_dir=f"{args.output_dir}/runs/attack", eval_strategy="no", eval_on_start=False, **common),
        attack_dataset=data["attack"], eval_dataset=data["eval"], processing_class=tokenizer, callbacks=[timer],
    )  # fmt: skip
    attack.train()
    plain_timer = StepTimer(args.device)
    model = load_model(args, path)
    plain = Trainer(
        model, TrainingArguments(output_dir=f"{args.output_dir}/runs/plain", **common), train_dataset=attack.train_dataset,
        data_collator=LMCollator(tokenizer.pad_token_id), callbacks=[plain_timer],
    )  # fmt: skip
    plain.train()
    started = time.perf_counter()
    # The quick suite's attacks shortened to --steps each (evaluations at start and end included): its overhead, not its 30 steps.
    suite = AttackSuite.preset("quick", output_dir=f"{args.output_dir}/runs/suite", per_device_train_batch_size=args.batch_size,
                               max_steps=args.steps, eval_steps=args.steps, disable_tqdm=True, use_cpu=args.device == "cpu")  # fmt: skip
    suite.run(load_model(args, path), attack_dataset=data["attack"], eval_dataset=data["eval"], processing_class=tokenizer)
    attack_step, plain_step = median_after_warmup(timer.times, args.warmup), median_after_warmup(plain_timer.times, args.warmup)
    return {"attack_step_s": attack_step, "plain_trainer_step_s": plain_step, "plain_over_attack": plain_step / attack_step,
            "quick_suite_s": time.perf_counter() - started, "quick_suite_steps_per_attack": args.steps}  # fmt: skip


def cir_speed(args, path, tokenizer) -> dict[str, float]:
    """CIR on the capitals the model knows (three phrasings each): seconds per unlearned fact and its step against its floor."""
    from hf_unlearn.data.facts import fact_sentences, world_capitals
    from hf_unlearn.evaluation import known_facts

    model = load_model(args, path)
    known = known_facts(model, tokenizer, world_capitals(120))
    sentences = fact_sentences(known, 3)
    prose = data_for(args, tokenizer, 100)["retain"]
    timer = StepTimer(args.device)
    epochs = 3  # epoch 0 collects statistics, then two updating epochs
    config = CIRConfig(
        output_dir=f"{args.output_dir}/runs/cir", num_train_epochs=epochs, disruption_budget=None, eval_strategy="no", eval_on_start=False,
        save_strategy="no", report_to="none", logging_steps=10**6, disable_tqdm=True, seed=0, use_cpu=args.device == "cpu",
        max_retain_loss_ratio=0,
    )  # fmt: skip
    trainer = UnlearnTrainer(model, config, forget_dataset=sentences, retain_dataset=prose, processing_class=tokenizer, callbacks=[timer])
    model = None
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    steps_per_epoch = len(timer.times) // epochs
    update_steps = timer.times[steps_per_epoch:]
    collate = LMCollator(tokenizer.pad_token_id)
    forget = [collate([trainer.train_dataset[j] for j in range(i * 32, min(len(sentences), (i + 1) * 32))]) for i in range(steps_per_epoch)]
    retain = [collate([prose[j] for j in range(i * 12, (i + 1) * 12)]) for i in range(steps_per_epoch)]
    floor = cir_floor(args, load_model(args, path), forget, retain)
    del trainer
    step = statistics.median(update_steps[1:] or update_steps)
    return {"facts": len(known), "seconds": seconds, "seconds_per_fact_per_epoch": seconds / epochs / len(known),
            "step_s": step, "floor_s": floor, "step_over_floor": step / floor}  # fmt: skip


# --- memory, each measurement in a fresh subprocess ----------------------------------------------------


def peak_memory_child(args) -> None:
    """Run in a subprocess: the peak memory of a MUDMAN run or a plain fine-tune of the same target modules.

    On the GPU: the CUDA allocator's peak of allocated memory. On the CPU, where the allocator keeps
    and reuses freed memory in ways that depend on what ran before, the resident-set peak, or with
    ``--child_live`` the peak of live tensors (the profiler's memory timeline: what
    ``max_memory_allocated`` measures on a GPU), in a separate process since profiling adds its own memory.
    """
    path = default_model_path() if args.model == "smollm2" else None
    tokenizer = AutoTokenizer.from_pretrained(path or default_model_path())
    data = data_for(args, tokenizer, args.tokens)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set size (VmHWM)
    model = load_model(args, path)
    targets = TARGETS[args.targets]
    before = torch.cuda.memory_allocated() if cuda else resident_bytes()["VmRSS"]
    common = dict(max_steps=args.steps, per_device_train_batch_size=args.batch_size, save_strategy="no", report_to="none",
                  logging_steps=10**6, disable_tqdm=True, seed=0, use_cpu=not cuda)  # fmt: skip
    weights = resolve_target_modules(model, targets)
    if args.child == "mudman":
        config = MUDMANConfig(output_dir=f"{args.output_dir}/runs/mem", target_modules=targets, max_retain_loss_ratio=0, **common)
        trainer = UnlearnTrainer(model, config, forget_dataset=data["unlearn"], retain_dataset=data["retain"], processing_class=tokenizer)
    else:  # a plain fine-tune of the same weights: one forward+backward per step, plain SGD
        for name, param in model.named_parameters():
            param.requires_grad_(name in weights)
        config = TrainingArguments(output_dir=f"{args.output_dir}/runs/mem", optim="sgd", learning_rate=1e-4, max_grad_norm=0.0, **common)
        trainer = Trainer(model, config, train_dataset=data["unlearn"], data_collator=LMCollator(tokenizer.pad_token_id))
    if not cuda:
        Path("/proc/self/clear_refs").write_text("5")  # after data preparation and model loading
    if args.child_live and not cuda:
        peak = live_tensor_peak(trainer.train)
    else:
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if cuda else resident_bytes()["VmHWM"]
    state = sum(p.numel() for p in weights.values()) * 4 * 2  # adversary + retain EMA, fp32
    print(json.dumps({"peak_mb": peak / 2**20, "before_mb": before / 2**20, "inherent_state_mb": state / 2**20}))


def live_tensor_peak(run) -> int:
    """Peak bytes of live tensors while ``run()`` executes on the CPU (torch.profiler's memory timeline)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as folder:
        timeline = Path(folder) / "timeline.json"
        prof.export_memory_timeline(str(timeline), device="cpu")
        _, sizes = json.loads(timeline.read_text())
    return max(sum(categories) for categories in sizes)


def resident_bytes() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def peak_memory(args, child: str, targets: str, tokens: int) -> dict[str, float]:
    """``peak_mb`` (resident set on the CPU, allocated on the GPU) and, on the CPU, ``live_peak_mb`` (live tensors)."""
    command = [sys.executable, __file__, "--child", child, "--targets", targets, "--tokens", str(tokens), "--steps", "4",
               "--device", args.device, "--dtype", args.dtype, "--model", args.model, "--batch_size", str(args.batch_size),
               "--output_dir", args.output_dir]  # fmt: skip
    measures = [[]] if args.device == "cuda" else [[], ["--child_live"]]
    results = [json.loads(subprocess.run(command + extra, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]) for extra in measures]
    if len(results) > 1:
        results[0]["live_peak_mb"] = results[1]["peak_mb"]
    return results[0]


def scaling(args, path, tokenizer) -> list[dict]:
    rows = []
    for tokens in (50, 100, 200):
        for targets in TARGETS:
            data = data_for(args, tokenizer, tokens)
            timing = method_step(args, f"mudman_{tokens}_{targets}", MUDMANConfig, {"target_modules": TARGETS[targets]}, path, tokenizer, data, False)
            memory = peak_memory(args, "mudman", targets, tokens) if args.memory else {}
            rows.append({"tokens_per_example": tokens, "targets": targets, **timing, **memory})
    return rows


def machine(args) -> dict:
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    return {"device": args.device, "device_name": device, "threads": torch.get_num_threads(), "dtype": args.dtype,
            "torch": torch.__version__, "cpus": os.cpu_count(), "packages": package_versions()}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2", "llama-1b"], default="smollm2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per example")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6, help="repeats of each floor measurement")
    parser.add_argument("--methods", nargs="+", default=["mudman", "graddiff", "npo", "cir", "attack"])
    parser.add_argument("--memory", action="store_true", help="measure peak memory (fresh subprocesses)")
    parser.add_argument("--scaling", action="store_true", help="the scaling table")
    parser.add_argument("--output_dir", default="outputs/benchmarks/speed")
    parser.add_argument("--child", choices=["mudman", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--child_live", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--targets", default="gate_proj", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    # bf16: autocast around fp32 weights, for the Trainer steps (their own bf16=True) and the plain-torch floors alike.
    with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
        run(args)


def run(args) -> None:
    if args.child:
        peak_memory_child(args)
        return
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = data_for(args, tokenizer, args.tokens)
    result = {"machine": machine(args), "setting": {k: v for k, v in vars(args).items() if k not in ("child", "targets")}}
    steps = {  # config, settings, NPO's reference forward in the floor
        "mudman": (MUDMANConfig, {"target_modules": ["gate_proj"]}, False),
        "graddiff": (GradDiffConfig, {}, False),
        "npo": (NPOConfig, {}, True),
    }
    result["methods"] = {}
    for method, (config_class, settings, reference_forward) in steps.items():
        if method in args.methods:
            result["methods"][method] = method_step(args, method, config_class, settings, path, tokenizer, data, reference_forward)
    if "cir" in args.methods and args.model == "smollm2":
        result["methods"]["cir"] = cir_speed(args, path, tokenizer)
    if "attack" in args.methods:
        result["attack"] = attack_ratio(args, path, tokenizer, data)
    if args.memory:
        mudman, plain = peak_memory(args, "mudman", "gate_proj", args.tokens), peak_memory(args, "plain", "gate_proj", args.tokens)
        state = mudman["inherent_state_mb"]
        result["memory_mb"] = {"inherent_state": state}
        for measure in ("peak_mb", "live_peak_mb"):  # resident set (GPU: allocated), and live tensors (CPU only)
            if measure in mudman:
                difference = mudman[measure] - plain[measure]
                result["memory_mb"][measure.removesuffix("_mb")] = {"mudman": mudman[measure], "plain_finetune": plain[measure],
                                                                      "difference": difference, "difference_over_state": difference / state}  # fmt: skip
    if args.scaling:
        result["scaling"] = scaling(args, path, tokenizer)
    (output_dir / "speed.json").write_text(json.dumps(result, indent=2))
    (output_dir / "speed.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"Machine: {m['device']} ({m['device_name']}), {m['threads']} threads, {m['dtype']}, torch {m['torch']}; "
             f"batch {result['setting']['batch_size']} x {result['setting']['tokens']} tokens", "",
             "| method | step (s) | floor (s) | step / floor |", "|---|---|---|---|"]  # fmt: skip
    for method, info in result["methods"].items():
        lines.append(f"| {method} | {info['step_s']:.3f} | {info['floor_s']:.3f} | {info['step_over_floor']:.3f} |")
    if "cir" in result["methods"]:
        cir = result["methods"]["cir"]
        lines.append(f"\nCIR: {cir['seconds_per_fact_per_epoch']:.3f} s per fact per epoch ({cir['facts']} facts, 3 phrasings each)")
    if "attack" in result:
        a = result["attack"]
        lines.append(f"\nAttack step {a['attack_step_s']:.3f} s vs plain Trainer {a['plain_trainer_step_s']:.3f} s "
                     f"(plain / attack = {a['plain_over_attack']:.3f}); quick suite {a['quick_suite_s']:.0f} s "
                     f"({a['quick_suite_steps_per_attack']} steps per attack, evaluations included)")  # fmt: skip
    if "memory_mb" in result:
        mem = result["memory_mb"]
        names = {"peak": "resident set" if result["machine"]["device"] == "cpu" else "allocated", "live_peak": "live tensors"}
        for key, name in names.items():
            if key in mem:
                m = mem[key]
                lines.append(f"\nPeak memory ({name}): MUDMAN {m['mudman']:.0f} MB, plain fine-tune {m['plain_finetune']:.0f} MB, "
                             f"difference {m['difference']:.0f} MB = {m['difference_over_state']:.2f} x the inherent state "
                             f"({mem['inherent_state']:.0f} MB)")  # fmt: skip
    if result.get("scaling"):
        lines += ["", "| tokens / example | targets | MUDMAN step (s) | step / floor | peak (MB) | live-tensor peak (MB) |", "|---|---|---|---|---|---|"]
        for row in result["scaling"]:
            lines.append(f"| {row['tokens_per_example']} | {row['targets']} | {row['step_s']:.3f} | {row['step_over_floor']:.3f} | {row.get('peak_mb', float('nan')):.0f} | {row.get('live_peak_mb', float('nan')):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
