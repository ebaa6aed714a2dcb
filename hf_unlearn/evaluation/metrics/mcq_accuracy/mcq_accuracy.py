"""`evaluate` module: WMDP-style multiple-choice scores from answer-letter logits.

    import evaluate
    from hf_unlearn.evaluation.metrics import metric_path
    metric = evaluate.load(metric_path("mcq_accuracy"))
    metric.compute(predictions=letter_logits, references=answers)  # {"accuracy": ..., "correct_prob": ...}

``predictions``: per question, the logits of the letters `` A`` .. `` D`` after the prompt
(``hf_unlearn.evaluation.mcq_letter_logits``); ``references``: the correct choice's index.
"""

import datasets
import evaluate
import torch

from hf_unlearn.evaluation.mcq import mcq_metrics


class MCQAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Zero-shot multiple-choice accuracy and mean probability of the correct letter, "
            "from the answer letters' logits renormalised over the letters (as WMDP is scored).",
            citation="",
            inputs_description="predictions: list of per-question letter logits; references: int index of the answer",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return mcq_metrics(torch.tensor(predictions), torch.tensor(references))
