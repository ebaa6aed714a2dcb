"""TOFU's and MUSE's metrics equal OpenUnlearning's on fixed inputs, to 1e-6.

The ``ou_*`` functions transcribe locuslab/open-unlearning's ``src/evals/metrics/`` (memorization.py, privacy.py,
utility.py, utils.py, mia/min_k.py, mia/utils.py) with their data structures flattened to arrays; the project's
functions were written apart from them.
"""

import numpy as np
import pytest
import scipy as sc
import torch
from conftest import char_tokenizer, tiny_llama
from rouge_score import rouge_scorer
from sklearn.metrics import roc_auc_score
from torch import nn

from hf_unlearn.evaluation import benchmarks as metrics

IGNORE_INDEX = -100


# --- OpenUnlearning, transcribed -----------------------------------------------------------------


def ou_evaluate_probability(logits, labels):  # utils.evaluate_probability
    shifted_labels = labels[..., 1:].contiguous()
    logits = logits[..., :-1, :].contiguous()
    loss_function = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="none")
    losses = loss_function(logits.transpose(-1, -2), shifted_labels).sum(dim=-1)
    num_token_gt = (labels != IGNORE_INDEX).sum(-1)
    avg_losses = losses / num_token_gt
    return [{"prob": p, "avg_loss": a} for p, a in zip(torch.exp(-avg_losses).tolist(), avg_losses.tolist())]


def aggregate_to_1D(x):
    return np.mean(x, axis=tuple(range(1, x.ndim)))


def ou_probability(probs):  # memorization.probability
    return np.mean(aggregate_to_1D(np.array(probs)))


def ou_probability_w_options(correct, all_wrong):  # memorization.probability_w_options
    correct, all_wrong = np.array(correct), np.array(all_wrong)
    wrong = np.sum(all_wrong, axis=tuple(range(1, all_wrong.ndim)))
    return np.mean(correct / (correct + wrong + 1e-10))


def ou_truth_ratio(correct_avg_losses, wrong_avg_losses, aggregator):  # memorization.truth_ratio
    correct_prob = np.exp(-aggregate_to_1D(np.array(correct_avg_losses)))
    wrong_prob = np.exp(-aggregate_to_1D(np.array(wrong_avg_losses)))
    truth_ratios = wrong_prob / (correct_prob + 1e-10)
    if aggregator == "closer_to_1_better":
        return truth_ratios, np.mean(np.minimum(truth_ratios, 1 / (truth_ratios + 1e-10)))
    return truth_ratios, np.mean(np.maximum(0, 1 - truth_ratios))


def ou_ks_test(forget_tr_stats, retain_tr_stats):  # privacy.ks_test
    return sc.stats.ks_2samp(np.array(forget_tr_stats), np.array(retain_tr_stats)).pvalue


def ou_hm_aggregate(values):  # utility.hm_aggregate
    return sc.stats.hmean(values)


def ou_rouge(gen_outputs, ground_truths):  # utils.eval_text_similarity's eval_rouge_recall_batch
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [scorer.score(gt, gen) for gen, gt in zip(gen_outputs, ground_truths)]
    return [{"rougeL_f1": s["rougeL"].fmeasure, "rougeL_recall": s["rougeL"].recall} for s in scores]


def ou_tokenwise_logprobs(logits, input_ids, labels_batch):  # utils.tokenwise_logprobs
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)[:, :-1, :]
    target_log_probs = torch.gather(log_probs, dim=2, index=input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    out = []
    for i in range(logits.shape[0]):
        actual_indices = (labels_batch[i] != IGNORE_INDEX).nonzero(as_tuple=True)[0][:-1]
        start_idx, end_idx = actual_indices[0].item(), actual_indices[-1].item()
        out.append(target_log_probs[i, start_idx - 1 : end_idx])
    return out


def ou_min_k_score(sample_stats, k):  # mia/min_k.MinKProbAttack.compute_score
    lp = sample_stats.float().cpu().numpy()
    if lp.size == 0:
        return 0
    num_k = max(1, int(len(lp) * k))
    return -np.mean(np.sort(lp)[:num_k])


def ou_mia_auc(forget_scores, holdout_scores):  # mia/utils.mia_auc
    scores = np.array(forget_scores + holdout_scores)
    labels = np.array([0] * len(forget_scores) + [1] * len(holdout_scores))
    return roc_auc_score(labels, scores)


def ou_privleak(score, ref):  # privacy.privleak
    score, ref = 1 - score, 1 - ref
    return (score - ref) / (ref + 1e-10) * 100


# --- fixed inputs ----------------------------------------------------------------------------------


@pytest.fixture
def losses():
    rng = np.random.default_rng(0)
    return rng.uniform(0.1, 4, size=40), rng.uniform(0.1, 4, size=(40, 5))


def test_answer_losses_and_probability(losses):
    torch.manual_seed(0)
    logits = torch.randn(3, 9, 11)
    labels = torch.randint(0, 11, (3, 9))
    labels[:, :3] = IGNORE_INDEX  # the prompt
    labels[1, 7:] = IGNORE_INDEX  # padding
    theirs = ou_evaluate_probability(logits, labels)
    assert metrics.answer_losses(logits, labels) == pytest.approx([t["avg_loss"] for t in theirs], abs=1e-6)
    correct, _ = losses
    assert metrics.probability(correct) == pytest.approx(ou_probability(np.exp(-correct)), abs=1e-6)


def test_normalized_probability(losses):
    correct, wrong = losses
    expected = ou_probability_w_options(np.exp(-correct), np.exp(-wrong))
    assert metrics.normalized_probability(correct, wrong) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("forget, aggregator", [(True, "closer_to_1_better"), (False, "true_better")])
def test_truth_ratio(losses, forget, aggregator):
    correct, wrong = losses
    ratios, expected = ou_truth_ratio(correct, wrong, aggregator)
    assert metrics.truth_ratios(correct, wrong) == pytest.approx(ratios, rel=1e-6)
    assert metrics.truth_ratio_score(metrics.truth_ratios(correct, wrong), forget) == pytest.approx(expected, abs=1e-6)


def test_forget_quality_and_tofus_own_formula(losses):
    correct, wrong = losses
    reference_correct, reference_wrong = correct[::-1] * 1.3, wrong * 0.8
    ratios, reference = metrics.truth_ratios(correct, wrong), metrics.truth_ratios(reference_correct, reference_wrong)
    expected = ou_ks_test(ou_truth_ratio(correct, wrong, "closer_to_1_better")[0], ou_truth_ratio(reference_correct, reference_wrong, "")[0])
    assert 1e-6 < expected < 0.5  # a p-value the test can tell from 0 and 1
    assert metrics.forget_quality(ratios, reference) == pytest.approx(expected, abs=1e-6)
    # TOFU's own code (aggregate_eval_stat.py) tests exp(perturbed - paraphrased) = 1/R: the KS statistic is unchanged
    # by a monotone map of both samples, so the p-value is the same.
    tofu_own = sc.stats.ks_2samp(np.exp(wrong.mean(-1) - correct), np.exp(reference_wrong.mean(-1) - reference_correct)).pvalue
    assert metrics.forget_quality(ratios, reference) == pytest.approx(tofu_own, abs=1e-6)


def test_model_utility():
    values = [0.91, 0.43, 0.52, 0.77, 0.88, 0.61, 0.84, 0.79, 0.58]
    assert metrics.model_utility(values) == pytest.approx(ou_hm_aggregate(values), abs=1e-6)
    assert metrics.model_utility(values) < np.mean(values)


GENERATIONS = ["The author was running late in Paris.", "she writes novels", "", "Born in 1954 in Lagos, Nigeria, to a tailor."]
ANSWERS = ["The author runs in Paris", "She wrote several novels about the sea", "Jaime Vasquez", "born in Lagos Nigeria in 1954"]


@pytest.mark.parametrize("measure, key", [("recall", "rougeL_recall"), ("fmeasure", "rougeL_f1")])
def test_rouge_l(measure, key):
    theirs = [s[key] for s in ou_rouge(GENERATIONS, ANSWERS)]
    ours = metrics.rouge_l(GENERATIONS, ANSWERS, measure)
    assert ours == pytest.approx(theirs, abs=1e-6) and 0 < ours[1] < 1 and ours[2] == 0
    if measure == "recall":  # "running" and "runs" share a stem: every answer word is matched
        assert ours[0] == 1


def test_min_k_token_logprobs_and_score():
    """Token log-probabilities as OpenUnlearning's Min-K attack reads a text (no BOS here: the first token is context),
    from the same model's logits on its preprocessing, and the score at k = 0.4 and at a k that rounds to zero tokens."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer)).eval()
    texts = ["the quick brown fox jumps", "a cat", "vault 7 opens with code 0042 only"]
    ours = metrics.token_logprobs(model, tokenizer, texts, max_length=20, batch_size=2)
    for text, mine in zip(texts, ours):
        ids = torch.tensor([tokenizer(text)["input_ids"][:20]])
        labels = ids.clone()
        labels[0, 0] = IGNORE_INDEX
        with torch.no_grad():
            theirs = ou_tokenwise_logprobs(model(ids).logits, ids, labels)[0]
        assert mine == pytest.approx(theirs.tolist(), abs=1e-6)
        for k in (0.4, 0.01):
            assert metrics.min_k_score(mine, k) == pytest.approx(ou_min_k_score(theirs, k), abs=1e-6)
    assert len(ours[0]) == 18 and len(ours[1]) == 3  # the first and the last token are not scored


def test_mia_auc_and_privleak():
    forget, holdout = [1.2, 0.4, 2.2, 0.9, 1.1], [2.5, 1.0, 3.1, 0.7, 1.9, 2.0]
    auc = metrics.mia_auc(forget, holdout)
    assert auc == pytest.approx(ou_mia_auc(forget, holdout), abs=1e-6) and auc > 0.5
    assert metrics.privleak(auc, 0.47) == pytest.approx(ou_privleak(auc, 0.47), abs=1e-6)
    assert metrics.privleak(0.47, 0.47) == 0
