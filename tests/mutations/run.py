"""Mutation check: remove a guard, and the test that names it must fail.

Each mutant replaces one exact piece of the package's code (it must occur once) and runs the test that
guards it; a mutant whose test stays green is a guarantee nobody checks. The files are restored after
each run, also on Ctrl-C.

    python tests/mutations/run.py            # every mutant (about 10 min on 2 CPU cores)
    python tests/mutations/run.py resume     # those whose name contains "resume"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name: (file, code as it is, the mutant, the test that must fail)
MUTANTS = {
    "fsdp: each process's loss not weighted by its share of the tokens": (
        "hf_unlearn/components/procedures.py", "(loss * share).backward(", "(loss * 1).backward(",
        "tests/test_fsdp.py::test_fsdp_two_processes_match_one_and_ddp",
    ),
    "fsdp: the normalization's norm of this process's shard only": (
        "hf_unlearn/gradients.py", "    return value.full_tensor() if isinstance(value, DTensor) else value",
        "    return value.to_local() if isinstance(value, DTensor) else value", "tests/test_fsdp.py::test_fsdp_two_processes_match_one_and_ddp",
    ),
    "fsdp: evaluators stop when their own share is scored": (
        "hf_unlearn/evaluation/common.py", "            score_batch(indices[-1:] or [0])", "            pass",
        "tests/test_fsdp.py::test_fsdp_evaluators_match_one_process",
    ),
    "fsdp: WAGLE's ties at the threshold all kept": (
        "hf_unlearn/gradients.py", "    chosen[tied.nonzero().flatten()[:take]] = True", "    chosen |= tied",
        "tests/test_fsdp.py::test_sharded_top_fraction_keeps_exactly_k_with_ties",
    ),
    "fsdp: save_model writes FSDP's shards, not a model": (
        "hf_unlearn/causal_lm_trainer.py", "        if _internal_call or not sharded:", "        if True:",
        "tests/test_fsdp.py::test_fsdp_save_model_writes_an_ordinary_safetensors_model",
    ),
    "fsdp: asked for on CPU processes and not engaged, run as DDP": (
        "hf_unlearn/causal_lm_trainer.py", "    if asked and not trainer.is_fsdp_enabled:", "    if False:",
        "tests/test_fsdp.py::test_fsdp_asked_for_on_cpu_processes_without_it_engaged_is_refused",
    ),
    "fsdp: DeepSpeed runs, unsharded by this code": (
        "hf_unlearn/causal_lm_trainer.py", "    if trainer.is_deepspeed_enabled:", "    if False:",
        "tests/test_fsdp.py::test_deepspeed_and_fsdp1_are_refused_naming_fsdp2",
    ),
    "fsdp: FSDP1 runs, whose flat parameters the methods do not handle": (
        "hf_unlearn/causal_lm_trainer.py", "    if trainer.is_fsdp_enabled and trainer.accelerator.state.fsdp_plugin.fsdp_version != 2:", "    if False:",
        "tests/test_fsdp.py::test_deepspeed_and_fsdp1_are_refused_naming_fsdp2",
    ),
    "golden circuit_breakers from the exact reference (full weights)": (
        "tests/test_golden.py", 'PEFT = {"circuit_breakers": dict(r=4, target_modules=["gate_proj", "up_proj", "down_proj"], init_lora_weights=False)}',
        "PEFT = {}", "tests/test_golden.py::test_configurations_are_well_conditioned",
    ),
    "first run: a float64 model's state rounded to fp32": (
        "hf_unlearn/gradients.py", "    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()", "    return tensor.float()",
        "tests/test_golden.py::test_weights_match_the_golden_file",
    ),
    "first run: abbreviated flags accepted": (
        "hf_unlearn/commands/common.py", 'usage=usage, allow_abbrev=False)', "usage=usage)",
        "tests/test_first_run.py::test_bad_settings_are_named_in_one_line",
    ),
    "first run: every process prints the refusal": (
        "hf_unlearn/cli.py", '        if os.environ.get("RANK", "0") == "0":', "        if True:",
        "tests/test_first_run.py::test_a_refusal_under_several_processes_is_one_line_from_the_main_process",
    ),
    "first run: a zero learning rate trains nothing, silently": (
        "hf_unlearn/unlearn_config.py", "        if self.learning_rate == 0 and not isinstance(self, FullUpdateArguments):", "        if False:",
        "tests/test_first_run.py::test_bad_settings_are_named_in_one_line",
    ),
    "first run: a checkpoint at the last step beside the final model": (
        "hf_unlearn/unlearn_trainer.py", "            control.should_save = False", "            pass",
        "tests/test_first_run.py::test_unlearn_evaluates_the_final_weights_once_and_saves_no_unasked_checkpoint",
    ),
    "first run: the final weights evaluated twice": (
        "hf_unlearn/unlearn_trainer.py", '        if last is not None and last.get("step") == self.state.global_step and not restored:', "        if False:",
        "tests/test_first_run.py::test_unlearn_evaluates_the_final_weights_once_and_saves_no_unasked_checkpoint",
    ),
    "first run: save_model writes no card": (
        "hf_unlearn/unlearn_trainer.py", "        if not _internal_call:\n            self.write_model_card(", "        if False:\n            self.write_model_card(",
        "tests/test_first_run.py::test_save_model_writes_the_card_and_the_info_into_the_folder_it_saves_to",
    ),
    "first run: attack ignores the folder's recorded data": (
        "hf_unlearn/commands/attack.py", '    data_args, _, recorded = run_data(model_path, data_args, given_names, "attack")', "    recorded = None",
        "tests/test_first_run.py::test_attack_on_an_unlearned_folder_uses_its_recorded_data",
    ),
    "first run: no text at an attack's best point": (
        "hf_unlearn/attacks/relearn_trainer.py", "            if is_best or self.state.global_step == 0:", "            if self.state.global_step == 0:",
        "tests/test_first_run.py::test_an_attacks_best_point_after_its_start_carries_its_text",
    ),
    "scenario: evaluate attacks with the default scenario": (
        "hf_unlearn/commands/common.py", "    defaults = dataclasses.asdict(ScenarioArguments())", "    defaults = dataclasses.asdict(ScenarioArguments())\n    recorded = {}",
        "tests/test_scenarios.py::test_unlearn_and_evaluate_with_the_facts_scenario_attack_split_a_and_score_split_b",
    ),
    "layers: an out-of-range layer accepted": (
        "hf_unlearn/targets.py", "    if not layers or not all(low <= layer <= high for layer in layers):", "    if False:",
        "tests/test_layer_settings.py::test_out_of_range_layers_are_refused_at_construction",
    ),
    "UNDO: a noise α or β outside [0, 1] accepted": (
        "hf_unlearn/undo.py", "            if not 0 <= getattr(self, name) <= 1:", "            if False:",
        "tests/test_undo.py::test_bad_settings_are_refused",
    ),
    "scenario: an unknown scenario accepted": (
        "hf_unlearn/scenarios.py", "        if self.scenario not in SCENARIOS:", "        if False:",
        "tests/test_scenarios.py::test_an_unknown_scenario_is_refused_in_one_line",
    ),
    "scenario: a fictitious scenario unlearned from a model that never learned its facts": (
        "hf_unlearn/scenarios.py", "    if known < TARGET_KNOWS * len(forget):", "    if False:",
        "tests/test_scenarios.py::test_the_fictitious_scenario_refuses_a_model_that_never_learned_its_facts",
    ),
    "scenario: the fictitious scenario's retain facts unscored": (
        "hf_unlearn/scenarios.py", '    scenario.evaluators["retain_facts"] = FactEvaluator(retain)', "    pass",
        "tests/test_scenarios.py::test_the_fictitious_scenario_scores_retain_facts_it_never_trains_on",
    ),
    "UNDO: a missing --then_distill file found only after unlearning": (
        "hf_unlearn/commands/unlearn.py", '        config_path(chain.then_distill, "--then_distill")', "        pass",
        "tests/test_first_run.py::test_bad_settings_are_named_in_one_line",
    ),
    "benchmarks: an unknown --benchmark accepted": (
        "hf_unlearn/commands/evaluate.py", "        if self.benchmark is not None and self.benchmark not in BENCHMARKS:", "        if False:",
        "tests/test_benchmarks.py::test_evaluate_refuses_benchmark_settings_it_cannot_honour",
    ),
    "benchmarks: a retain model without a benchmark accepted": (
        "hf_unlearn/commands/evaluate.py", "        if (self.retain_model or self.retain_logs) and self.benchmark is None:", "        if False:",
        "tests/test_benchmarks.py::test_evaluate_refuses_benchmark_settings_it_cannot_honour",
    ),
    "benchmarks: both a retain model and its logs accepted": (
        "hf_unlearn/commands/evaluate.py", "        if self.retain_model and self.retain_logs:", "        if False:",
        "tests/test_benchmarks.py::test_evaluate_refuses_benchmark_settings_it_cannot_honour",
    ),
    "benchmarks: ragged perturbed answers accepted by TOFU": (
        "hf_unlearn/evaluation/tofu.py", '            if len({len(wrong) for wrong in dataset["perturbed_answer"]}) != 1:', "            if False:",
        "tests/test_benchmarks.py::test_tofu_evaluator_refuses_ragged_perturbed_answers",
    ),
    "benchmarks: a retain model's results of another forget split accepted": (
        "hf_unlearn/evaluation/tofu.py", "            if len(self.reference_ratios) != len(self.forget):", "            if False:",
        "tests/test_benchmarks.py::test_tofu_evaluator_values_and_forget_quality",
    ),
    "a fine-tuning trainer given an attack that trains nothing fine-tunes": (
        "hf_unlearn/attacks/relearn_trainer.py", "        if args.kind != FINE_TUNE:", "        if False:",
        "tests/test_no_training_attacks.py::test_relearn_attack_trainer_refuses_a_kind_that_trains_nothing",
    ),
    "W&B: the unlearn run finished before the evaluation logs into it": (
        "hf_unlearn/pipeline.py", '"unlearn", "unlearn", run_config, finish=False)', '"unlearn", "unlearn", run_config, finish=True)',
        "tests/test_cli.py::test_unlearn_command_reports_to_wandb_and_evaluates_into_the_same_run",
    ),
    "evaluate ignores the data recorded in unlearning_info.json": (
        "hf_unlearn/commands/common.py", "    return scenario_arguments({**recorded, **given}), differing", "    return scenario_arguments(given), differing",
        "tests/test_cli.py::test_evaluate_as_printed_uses_the_data_the_model_was_unlearned_on",
    ),
    "the card keeps a report of other weights": (
        "hf_unlearn/unlearn_trainer.py", '        if report is not None and report.details.get("model_weights") != weights:', "        if False:",
        "tests/test_cli.py::test_evaluate_as_printed_uses_the_data_the_model_was_unlearned_on",
    ),
    "resume from the final checkpoint takes a step more": (
        "hf_unlearn/unlearn_trainer.py", "            if state.global_step >= self.args.max_steps:", "            if False:",
        "tests/test_trainer.py::test_resume_from_the_final_checkpoint_mid_epoch_takes_no_step_more",
    ),
    "resume accepts another run's checkpoint": (
        "hf_unlearn/unlearn_trainer.py", "            self.check_same_run(resume_from_checkpoint)\n", "            pass\n",
        "tests/test_trainer.py::test_a_checkpoint_of_another_run_is_refused",
    ),
    "a sweep resumed with other settings joins the old study": (
        "hf_unlearn/sweep.py", "    check_same_study(study, settings, args)\n", "",
        "tests/test_sweep.py::test_a_sweep_killed_in_its_second_trial_resumes_without_recomputing_the_first",
    ),
    "quality benchmark recomputes finished evaluations": (
        "benchmarks/quality.py", "            missing = [fact_set for fact_set, path in paths.items() if not path.is_file()]",
        "            missing = list(paths)",
        "tests/test_quality_benchmark.py::test_killed_during_an_evaluation_it_resumes_without_recomputing_trials_or_evaluations",
    ),
    "quality benchmark reruns finished attacks of an evaluation": (
        "benchmarks/quality.py", "result = attack(model, suite, scenario_data, tokenizer, resume=True)",
        "result = attack(model, suite, scenario_data, tokenizer, resume=False)",
        "tests/test_quality_benchmark.py::test_killed_during_an_evaluation_it_resumes_without_recomputing_trials_or_evaluations",
    ),
    "quality benchmark mixes state of other settings": (
        "benchmarks/quality.py", "    if changed:\n        sys.exit(", "    if False:\n        sys.exit(",
        "tests/test_quality_benchmark.py::test_state_from_other_settings_is_refused_naming_what_changed",
    ),
    "evaluation loss as the Trainer's mean of batch means": (
        "hf_unlearn/causal_lm_trainer.py", "        self.compute_metrics = token_mean_loss  # with prediction_step: exact evaluation losses\n", "",
        "tests/test_distributed.py::test_evaluators_two_processes_match_one",
    ),
    "the attack resume key ignores evaluator settings (keyed by their data only, as before)": (
        "hf_unlearn/attacks/suite.py", "    if dataclasses.is_dataclass(data):  # an evaluator", "    if dataclasses.is_dataclass(data):\n"
        "        return f\"{type(data).__name__}({_data_key(getattr(data, 'dataset', None))})\"\n    if False:",
        "tests/test_attacks.py::test_the_resume_key_sees_every_evaluator_setting",
    ),
    "a suite whose attacks all diverged after a valid recovery reports no figure": (
        "hf_unlearn/attacks/suite.py", 'attack["diverged_at"] is not None and (attack["best"] is None or is_start(attack["best"]))',
        'attack["diverged_at"] is not None', "tests/test_attacks.py::test_an_attack_that_recovered_before_it_diverged_counts_with_its_valid_point",
    ),
    "evaluate scores a baseline with another tokenizer": (
        "hf_unlearn/commands/evaluate.py", "    check_same_tokenizer(tokenizer, baseline_tokenizer, model_path, baseline_path)\n", "",
        "tests/test_cli.py::test_evaluate_refuses_a_baseline_with_another_tokenizer",
    ),
    "sequences longer than the model's positions trained silently": (
        "hf_unlearn/causal_lm_trainer.py", "        if positions and longest > positions:", "        if False:",
        "tests/test_reliability.py::test_max_length_blank_rows_and_positions",
    ),
    "max_length ignored for pre-tokenized data (the CLI's chunks)": (
        "hf_unlearn/data/processing.py", '    if max_length is not None and "input_ids" in dataset.column_names and', "    if False and",
        "tests/test_reliability.py::test_max_length_blank_rows_and_positions",
    ),
    "--hub_token recorded by W&B": (
        "hf_unlearn/cli.py", "    mask_secrets(sys.argv)\n", "", "tests/test_cli.py::test_the_hub_token_never_reaches_wandb_files",
    ),
    "a read-only output folder found only at the final save": (
        "hf_unlearn/causal_lm_trainer.py", "        check_writable(args.output_dir)\n", "",
        "tests/test_reliability.py::test_an_output_dir_that_cannot_be_written_is_refused_before_training",
    ),
    "every process loads rank 0's method state": (
        "hf_unlearn/unlearn_trainer.py", "        path = os.path.join(checkpoint, method_state_name(self.args.process_index))\n        if not os.path.isfile(path):",
        "        path = os.path.join(checkpoint, method_state_name(0))\n        if not os.path.isfile(path):",
        "tests/test_distributed.py::test_killed_during_a_checkpoint_save_resumes_to_the_uninterrupted_weights",
    ),
    "only rank 0's method state checked for a complete checkpoint": (
        "hf_unlearn/unlearn_trainer.py", "for rank in range(num_processes))", "for rank in range(1))",
        "tests/test_trainer.py::test_a_checkpoint_is_complete_only_with_every_process_state",
    ),
    "the NaN guard checks the loss only, not the gradient": (
        "hf_unlearn/unlearn_trainer.py", "        if not math.isfinite(loss.item()) or (grads and not torch.isfinite(global_norm(grads))):",
        "        if not math.isfinite(loss.item()):", "tests/test_reliability.py::test_a_nan_gradient_with_a_finite_loss_stops_training_unapplied",
    ),
    "the broken-model guard ignores a NaN retain probe": (
        "hf_unlearn/evaluation/disruption.py", "    return not math.isfinite(value) or value > ratio * start", "    return value > ratio * start",
        "tests/test_reliability.py::test_a_nan_retain_probe_stops_training",
    ),
    "the broken-model guard's start not restored on resume": (
        "hf_unlearn/unlearn_trainer.py", '        self.start = state["start"]', "        pass",
        "tests/test_reliability.py::test_the_broken_model_guard_keeps_its_start_across_a_resume",
    ),
    "diverged attack points counted as the attacker's best": (
        "hf_unlearn/attacks/attack.py", 'if not point.get("diverged") and math.isfinite(point[metric])]', "if math.isfinite(point[metric])]",
        "tests/test_relearn.py::test_divergence_rules_and_the_best_point_skip_broken_models",
    ),
    "the retain-ratio divergence rule removed": (
        "hf_unlearn/evaluation/disruption.py", "    return not math.isfinite(value) or value > ratio * start", "    return not math.isfinite(value)",
        "tests/test_relearn.py::test_divergence_rules_and_the_best_point_skip_broken_models",
    ),
    "MUDMAN accepts gradient clipping (it would rescale the update it builds)": (
        "hf_unlearn/components/procedures.py", '"max_grad_norm": (args.max_grad_norm > 0,', '"max_grad_norm": (False,',
        "tests/test_trainer.py::test_config_validation",
    ),
    "no barrier before the trainer state (rank 0 marks a checkpoint complete before rank 1 saved)": (
        "hf_unlearn/unlearn_trainer.py", "        # it must not exist before every process has saved its part.\n        self.accelerator.wait_for_everyone()\n",
        "        # it must not exist before every process has saved its part.\n",
        "tests/test_distributed.py::test_the_trainer_state_is_written_after_every_process_state",
    ),
    "--resume_from_checkpoint True taken as a folder name": (
        "hf_unlearn/unlearn_trainer.py", 'if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "false"):', "if False:",
        "tests/test_cli.py::test_resume_flag_on_the_command_line_and_attack_resumes",
    ),
    "hf-unlearn attack recomputes finished attacks": (
        "hf_unlearn/commands/attack.py", 'scenario, tokenizer, resume=True)  # finished attacks are read back', "scenario, tokenizer)",
        "tests/test_cli.py::test_resume_flag_on_the_command_line_and_attack_resumes",
    ),
    "a token given as a fixed sweep setting stored in the study": (
        "hf_unlearn/sweep.py", '    sweep["fixed"] = without_secrets(sweep["fixed"])\n', "",
        "tests/test_sweep.py::test_a_sweep_killed_in_its_second_trial_resumes_without_recomputing_the_first",
    ),
    "the card names a local folder as base_model": (
        "hf_unlearn/model_card.py", "        base_model=info.base_model if is_hub_id(info.base_model) else None,", "        base_model=info.base_model,",
        "tests/test_cli.py::test_the_card_metadata_holds_the_robustness_results_and_only_hub_base_models",
    ),
    "the trainer does not ask the method to check its config": (
        "hf_unlearn/unlearn_trainer.py", "        spec.check_args(args)\n", "        pass\n",
        "tests/test_methods.py::test_method_needs_its_config_class",
    ),
    "unlearn loads the model before the method checks its config": (
        "hf_unlearn/commands/unlearn.py", "    get_method(config.method).check_args(config)  # before the model loads", "    pass  #",
        "tests/test_first_run.py::test_bad_settings_are_named_in_one_line",
    ),
    "a bare UnlearnConfig runs as no method": (
        "hf_unlearn/unlearn_trainer.py", "        if args.method is None:", "        if False:",
        "tests/test_methods.py::test_method_needs_its_config_class",
    ),
    "--config=FILE silently ignored": (
        "hf_unlearn/commands/common.py", '            resolved += ["--config", config_path(arg.split("=", 1)[1])]', "            resolved.append(arg)",
        "tests/test_recipes.py::test_config_equals_form_is_read",
    ),
    "bf16 checkpoints loaded as bf16 for training": (
        "hf_unlearn/models.py", '        _, model, tokenizer = load_model(model, "float32")', '        _, model, tokenizer = load_model(model, "auto")',
        "tests/test_trainer.py::test_models_load_in_float32_and_resume_false_is_no_resume",
    ),
    "quality benchmark: a study without a finished trial stops the worker": (
        "benchmarks/quality.py", '    if best is not None and "best_params" not in best:', "    if False:",
        "tests/test_quality_benchmark.py::test_a_study_without_a_finished_trial_is_a_row_and_more_trials_re_evaluate",
    ),
    "target_modules silently ignored with a LoRA adapter": (
        "hf_unlearn/unlearn_trainer.py", "    if adapter and list(args.target_modules) != list(default):", "    if False:",
        "tests/test_reliability.py::test_target_modules_with_a_lora_adapter_are_refused",
    ),
    "half-precision weights trained in place": (
        "hf_unlearn/causal_lm_trainer.py", "        check_trained_precision(model)\n", "",
        "tests/test_reliability.py::test_half_precision_weights_are_refused_for_training",
    ),
    "whitespace-only rows trained on": (
        "hf_unlearn/data/processing.py", "        if blank:\n", "        if False:\n",
        "tests/test_reliability.py::test_max_length_blank_rows_and_positions",
    ),
    "a weights-only (save_only_model) checkpoint called interrupted": (
        "hf_unlearn/unlearn_trainer.py", "(not with save_only_model=True, which keeps the weights only)", "(interrupted while saving?)",
        "tests/test_trainer.py::test_a_weights_only_checkpoint_says_why_it_cannot_be_resumed",
    ),
    "the disruption budget stops CIR only": (
        "hf_unlearn/unlearn_trainer.py", "        if args.disruption_budget is not None:\n            self.add_callback(",
        "        if args.method == 'cir' and args.disruption_budget is not None:\n            self.add_callback(",
        "tests/test_trainer.py::test_every_method_has_one_disruption_budget_and_any_method_stops_at_it",
    ),
    "a config lacking a setting its objective reads registers": (
        "hf_unlearn/registry.py", "        if missing:\n", "        if False:\n",
        "tests/test_methods.py::test_a_config_lacking_a_setting_its_method_reads_fails_at_registration",
    ),
    "a sweep's best.yaml stops at CIR's default budget": (
        "hf_unlearn/sweep.py", '            "disruption_budget": None,  # as the trial ran: pruned beyond the sweep\'s budget, never stopped\n', "",
        "tests/test_sweep.py::test_a_sweep_killed_in_its_second_trial_resumes_without_recomputing_the_first",
    ),
    "a resumed sweep replays its sampler's draws": (
        "hf_unlearn/sweep.py", "TPESampler(seed=args.seed + len(study.get_trials(deepcopy=False)))", "TPESampler(seed=args.seed)",
        "tests/test_sweep.py::test_a_resumed_sweep_draws_settings_it_has_not_tried",
    ),
    "a killed trial's settings are dropped": (
        "hf_unlearn/sweep.py", "            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),", "",
        "tests/test_sweep.py::test_a_sweep_killed_in_its_second_trial_resumes_without_recomputing_the_first",
    ),
    "the quality benchmark trusts finished-trial counts with repeated settings": (
        "benchmarks/quality.py", "    return min(finished, distinct_finished(", "    return max(finished, distinct_finished(",
        "tests/test_quality_benchmark.py::test_an_evaluation_tuned_on_repeated_settings_is_re_tuned",
    ),
    "a discrete space smaller than n_trials is drawn forever": (
        "hf_unlearn/sweep.py", "    target = min(args.n_trials, search_space_size(args.search_space))", "    target = args.n_trials",
        "tests/test_sweep.py::test_a_discrete_space_smaller_than_n_trials_ends",
    ),
    "an attempt ignores its pass factor": (
        "benchmarks/quality.py", '    passes = scale["pass_budget"] * attempt.pass_factor', '    passes = scale["pass_budget"]',
        "tests/test_quality_benchmark.py::test_an_attempt_runs_the_tuned_settings_longer_and_stops_at_its_budget",
    ),
    "an attempt runs past its disruption budget": (
        "benchmarks/quality.py", "                disruption_budget=budget, ", "                disruption_budget=None, ",
        "tests/test_quality_benchmark.py::test_an_attempt_runs_the_tuned_settings_longer_and_stops_at_its_budget",
    ),
    "an attempt of a re-tuned method is read back": (
        "benchmarks/quality.py", "                if done.get(\"settings\") == tuned.get(\"settings\")", "                if True or done.get(\"settings\") == tuned.get(\"settings\")",
        "tests/test_quality_benchmark.py::test_an_attempt_is_redone_when_its_method_was_re_tuned",
    ),
    "the quality benchmark starts a study after its time limit": (
        "benchmarks/quality.py", "            if out_of_time(args):\n                return\n            best = None", "            best = None",
        "tests/test_quality_benchmark.py::test_a_time_limit_bounds_the_studies_and_starts_nothing_after_it",
    ),
    "a sweep ignores its timeout": (
        "hf_unlearn/sweep.py", "                timeout=None if args.timeout_s is None else", "                timeout=None if True else",
        "tests/test_sweep.py::test_a_timeout_starts_no_trial_after_it_and_the_same_command_continues",
    ),
    "a pruned trial records no disruption": (
        "hf_unlearn/sweep.py", '            self.trial.set_user_attr("disruption", self.disruption)\n', "",
        "tests/test_sweep.py::test_a_trial_beyond_the_disruption_budget_is_pruned",
    ),
    "hf-unlearn --help imports torch": (
        "hf_unlearn/cli.py", "from collections.abc import Sequence\n", "from collections.abc import Sequence\n\nimport torch  # noqa: F401\n",
        "tests/test_cli.py::test_help_version_and_env_import_nothing_heavy",
    ),
    "README's quality tables never rewritten": (
        "benchmarks/quality.py", '    write_text(readme, f"{text[:begin]}\\n\\n{tables.strip()}\\n\\n{text[end:]}")', "    write_text(readme, text)",
        "tests/test_quality_benchmark.py::test_update_readme_rewrites_only_the_tables",
    ),
    "README without its quality-table lines read as an empty table": (
        "benchmarks/quality.py", "    if end < 0:", "    if False:",
        "tests/test_quality_benchmark.py::test_update_readme_rewrites_only_the_tables",
    ),
    # Issue 33: the newest code's promises (its table), then its fixes.
    'the quantize attack on a model without nn.Linear quantizes nothing': (
        'hf_unlearn/attacks/quantize.py', "    if not layers:  # GPT-2's", "    if False:  # GPT-2's",
        'tests/test_no_training_attacks.py::test_a_model_without_linear_layers_is_refused_by_the_quantize_attack',
    ),
    'input attacks put the prefix before the BOS': (
        'hf_unlearn/attacks/inputs.py', '        keep = len(leading) if leading and ids[: len(leading)] == leading else 0', '        keep = 0',
        'tests/test_no_training_attacks.py::test_a_bos_the_tokenizer_adds_stays_first_and_one_it_only_names_is_the_chats_own',
    ),
    "the chat prompt keeps the template's BOS": (
        'hf_unlearn/attacks/inputs.py', '        return text[len(bos) :] if bos and text.startswith(bos) else text', '        return text',
        'tests/test_no_training_attacks.py::test_a_bos_the_tokenizer_adds_stays_first_and_one_it_only_names_is_the_chats_own',
    ),
    'an in-context prefix longer than the context is scored': (
        'hf_unlearn/attacks/in_context.py', '            if len(prefix_ids) > room:\n                break', '            if False:\n                break',
        'tests/test_no_training_attacks.py::test_in_context_and_prompt_variants_are_those_the_context_holds_fewest_shots_first',
    ),
    'a prompt longer than the context is scored': (
        'hf_unlearn/attacks/prompt.py', '            if len(prefix_ids) > room:\n                continue', '            if False:\n                continue',
        'tests/test_no_training_attacks.py::test_in_context_and_prompt_variants_are_those_the_context_holds_fewest_shots_first',
    ),
    'in-context shots neither sorted nor deduplicated': (
        'hf_unlearn/attacks/in_context.py', '        for shots in sorted(set(config.in_context_shots)):', '        for shots in config.in_context_shots:',
        'tests/test_no_training_attacks.py::test_in_context_and_prompt_variants_are_those_the_context_holds_fewest_shots_first',
    ),
    "a variant that broke the model can be the attacker's best": (
        'hf_unlearn/attacks/attack.py', '        if diverged(point, start, config.divergence_retain_ratio):', '        if False:',
        'tests/test_no_training_attacks.py::test_a_variant_that_broke_the_model_is_marked_and_never_the_attackers_best',
    ),
    "a resumed suite ignores the attacks' settings": (
        'hf_unlearn/attacks/suite.py', 'if saved_key == key and same_settings(json.loads(saved_settings), json.loads(config.to_json_string()), type(config)):', 'if saved_key == key:',
        'tests/test_no_training_attacks.py::test_resume_reads_back_an_attack_that_trains_nothing_only_with_the_same_settings',
    ),
    'a NaN retain loss is within the disruption budget': (
        'hf_unlearn/evaluation/disruption.py', '        return not math.isfinite(value) or self.rise(start, value) > self.amount', '        return self.rise(start, value) > self.amount',
        'tests/test_sweep.py::test_a_nan_retain_loss_is_beyond_every_budget',
    ),
    'held-out chunks not shuffled across documents': (
        'hf_unlearn/data/processing.py', '    return DatasetDict({name: part.shuffle(seed=seed) for name, part in chunked.items()})', '    return chunked',
        'tests/test_data.py::test_held_out_chunks_are_shuffled_across_documents',
    ),
    'the card crashes when every attack diverged': (
        'hf_unlearn/model_card.py', '        if point is not None and math.isfinite(point.get(key, math.nan))\n',
        '        if math.isfinite(point.get(key, math.nan))\n',
        'tests/test_attacks.py::test_when_every_attack_diverges_the_report_says_so_in_words',
    ),
    'a sweep trial whose attacks all diverged is scored': (
        'hf_unlearn/sweep.py', '    if result.all_diverged:\n        raise optuna.TrialPruned', '    if False:\n        raise optuna.TrialPruned',
        'tests/test_sweep.py::test_a_trial_whose_attacks_all_diverged_is_pruned_not_scored',
    ),
    'a minimizing sweep ranks its trials descending': (
        'hf_unlearn/sweep.py', 'reverse=args.direction == "maximize")', 'reverse=True)',
        'tests/test_sweep.py::test_a_minimizing_sweep_names_its_lowest_trial_best',
    ),
    "SmolLM2's chat loses its first <|im_start|> (a BOS named, not added)": (
        'hf_unlearn/attacks/inputs.py', '    return tokenizer.bos_token if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else None', '    return tokenizer.bos_token',
        'tests/test_no_training_attacks.py::test_the_chat_prompt_of_smollm2_starts_its_first_turn',
    ),
    '--attack_steps below 1 accepted': (
        'hf_unlearn/attacks/presets.py', '    if attack_steps is not None and attack_steps < 1:', '    if False:',
        'tests/test_first_run.py::test_bad_settings_of_every_command_are_refused_before_any_model_loads',
    ),
    'an unknown --attack_suite found after the models load': (
        'hf_unlearn/attacks/presets.py', '    if attack_suite not in (*PRESETS, *others):', '    if False:',
        'tests/test_first_run.py::test_bad_settings_of_every_command_are_refused_before_any_model_loads',
    ),
    '--quantize_group_size 0 read as one scale per row': (
        'hf_unlearn/attacks/relearn_config.py', '        if self.quantize_group_size is not None and self.quantize_group_size < 1:', '        if False:',
        'tests/test_first_run.py::test_bad_settings_of_every_command_are_refused_before_any_model_loads',
    ),
    'an unknown --prompt_templates name found after the models load': (
        'hf_unlearn/attacks/relearn_config.py', '        if unknown:\n            raise invalid_setting("prompt_templates"', '        if False:\n            raise invalid_setting("prompt_templates"',
        'tests/test_first_run.py::test_bad_settings_of_every_command_are_refused_before_any_model_loads',
    ),
    'a group size that divides no layer found after the first evaluations': (
        'hf_unlearn/attacks/quantize.py', '        check_group_size(model, config.quantize_group_size)\n', '        pass\n',
        'tests/test_first_run.py::test_a_group_size_that_divides_no_layer_is_refused_before_any_attack',
    ),
    'a group size that divides no layer not checked before the attacks': (
        'hf_unlearn/attacks/quantize.py', '    if group_size is not None and any(width % group_size for width in widths):', '    if False:',
        'tests/test_first_run.py::test_a_group_size_that_divides_no_layer_is_refused_before_any_attack',
    ),
    'a misspelled --lm_eval_tasks found inside the first attack': (
        'hf_unlearn/evaluation/evaluators.py', '    if unknown:\n        close = difflib', '    if False:\n        close = difflib',
        'tests/test_first_run.py::test_bad_settings_of_every_command_are_refused_before_any_model_loads',
    ),
    "a search space without its step-size setting registered": (
        'hf_unlearn/registry.py', '        if search_space and step_size_setting not in search_space:', '        if False:',
        'tests/test_methods.py::test_a_search_space_without_its_step_size_setting_is_refused_at_registration',
    ),
    "the fictitious studies search the published step sizes": (
        'benchmarks/quality.py', '    factor = STEP_SIZE_FACTOR.get(scenario, 1)', '    factor = 1',
        'tests/test_quality_benchmark.py::test_fictitious_studies_search_ten_times_the_published_step_size_and_nothing_else_moves',
    ),
    "benchmarks/tofu.py reads back a method's rows after it was re-tuned": (
        'benchmarks/tofu.py', 'if recorded.get(name, {}).get("inputs") == inputs:', 'if name in recorded:',
        'tests/test_tofu_benchmark.py::test_rows_of_an_unchanged_evaluation_are_read_back_and_a_changed_one_is_scored_again',
    ),
    "benchmarks/tofu.py reads back rows scored on another build of the target or the oracle": (
        'benchmarks/tofu.py', 'TERMS = ("seed", "questions", "models", "scale")', 'TERMS = ("seed", "questions", "scale")',
        'tests/test_tofu_benchmark.py::test_rows_scored_on_another_build_of_the_target_or_the_oracle_are_not_read_back',
    ),
    "text samples: a batch's left padding attended to": (
        "hf_unlearn/evaluation/common.py", "    out = model.generate(input_ids=ids, attention_mask=mask,", "    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),",
        "tests/test_first_run.py::test_text_samples_of_prompts_of_different_lengths_are_each_prompts_own_greedy_completion",
    ),
    "UNDO: an unlearned teacher's pretraining tokens looked up under its folder's name": (
        "hf_unlearn/undo.py", "        name = unlearned_from(self.teacher)", "        name = str(self.teacher.config._name_or_path)",
        "tests/test_undo.py::test_a_teacher_loaded_from_an_unlearned_folder_counts_its_base_models_pretraining_tokens",
    ),
    "every command imports sklearn (2 s) for a metric only MUSE uses": (
        "hf_unlearn/evaluation/benchmarks.py", "MIN_K = 0.4  #", "from sklearn.metrics import roc_auc_score  # noqa: E402\nMIN_K = 0.4  #",
        "tests/test_architecture.py::test_the_commands_start_without_the_libraries_only_tofu_and_muse_metrics_use",
    ),
    "the harness's task index rebuilt at every evaluation (14 s each)": (
        'hf_unlearn/evaluation/evaluators.py', '@functools.cache\ndef harness_task_manager', 'def harness_task_manager',
        'tests/test_evaluation.py::test_harness_tasks_run_as_an_evaluator_on_local_files',
    ),
    'a YAML key set twice: the last wins': (
        'hf_unlearn/commands/common.py', '                if key.value in lines:', '                if False:',
        'tests/test_first_run.py::test_a_config_file_that_sets_a_key_twice_is_refused',
    ),
    'evaluate takes weights replaced after unlearning': (
        'hf_unlearn/commands/common.py', '    if recorded is not None and recorded.weights_sha256 and saved_weights_digest(model_path) != recorded.weights_sha256:', '    if False:',
        'tests/test_first_run.py::test_evaluate_refuses_weights_replaced_after_unlearning',
    ),
    'unlearning_info.json records no weights digest': (
        'hf_unlearn/unlearn_trainer.py', 'weights_sha256=saved_weights_digest(output_dir))', 'weights_sha256=None)',
        'tests/test_first_run.py::test_evaluate_refuses_weights_replaced_after_unlearning',
    ),
    "a distilled folder keeps its teacher's weights digest": (
        'hf_unlearn/commands/distill.py', ', weights_sha256=saved_weights_digest(config.output_dir))', ')',
        'tests/test_scenarios.py::test_distill_chains_after_unlearn_and_evaluate_reads_its_folder',
    ),
    'facts with a repeated prompt accepted': (
        'hf_unlearn/data/facts.py', '    if repeated:  # one copy', '    if False:  # one copy',
        'tests/test_dataset_recipes.py::test_facts_schema_errors',
    ),
    'the forget source named as retain source accepted': (
        'hf_unlearn/data/sources.py', '        if self.retain_source == self.forget_source or (forget.is_file() and retain.is_file() and forget.samefile(retain)):', '        if False:',
        'tests/test_data.py::test_retain_text_that_is_the_forget_text_is_refused',
    ),
    'a copy of the forget text as retain text accepted': (
        'hf_unlearn/data/sources.py', '    if shared:\n', '    if False:\n',
        'tests/test_data.py::test_retain_text_that_is_the_forget_text_is_refused',
    ),
}


def stale(path: str, original: str) -> str | None:
    """Why a mutant no longer fits the code (its code moved or changed), or None."""
    file = ROOT / path
    count = file.read_text().count(original) if file.is_file() else 0
    return None if count == 1 else f"its code occurs {count} times in {path}; update this mutant"


def run(name: str, path: str, original: str, mutant: str, test: str) -> bool:
    """True when the mutant's test fails (the guard is checked)."""
    file = ROOT / path
    text = file.read_text()
    try:
        file.write_text(text.replace(original, mutant))
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)  # fmt: skip
    finally:
        file.write_text(text)
    return done.returncode != 0


def main(pattern: str = "") -> None:
    selected = {name: mutant for name, mutant in MUTANTS.items() if pattern in name}
    survivors = []
    print("| mutant | test | killed |\n|---|---|---|")
    for name, (path, original, mutant, test) in selected.items():
        started = time.time()
        why_stale = stale(path, original)  # a stale mutant checks nothing: it counts as a survivor, and the others still run
        killed = why_stale is None and run(name, path, original, mutant, test)
        survivors += [] if killed else [name]
        verdict = f"**STALE**: {why_stale}" if why_stale else "yes" if killed else "**NO**"
        print(f"| {name} | `{test.split('::')[-1]}` | {verdict} ({time.time() - started:.0f} s) |", flush=True)
    print(f"\n{len(selected) - len(survivors)} of {len(selected)} mutants killed" + (f"; survivors: {survivors}" if survivors else ""))
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main(*sys.argv[1:2])
