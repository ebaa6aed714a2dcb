"""`evaluate` module: fact accuracy from the greedy tokens at each answer position.

    metric = evaluate.load(metric_path("fact_accuracy"))
    metric.compute(predictions=argmax_ids, references=answer_ids, answer_probs=probs)

``predictions``: per fact, the argmax token id at each answer position under teacher forcing;
``references``: the answer's token ids. A fact counts as known when all of them match (greedy
decoding reproduces the answer). ``answer_probs`` (optional): per fact, the probability of each
answer token; ``answer_prob`` is then the mean over facts of their mean.
"""

import datasets
import evaluate

from hf_unlearn.evaluation.facts import fact_metrics


class FactAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of facts whose answer greedy decoding reproduces, and mean answer-token probability.",
            citation="",
            inputs_description="predictions, references: per fact, lists of token ids; answer_probs: optional floats",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, answer_probs=None):
        if any(len(p) != len(r) for p, r in zip(predictions, references)):
            raise ValueError("each prediction needs one token per answer token")
        probs = answer_probs or [[float("nan")]] * len(references)
        scores = [(list(p) == list(r), sum(q) / len(q)) for p, r, q in zip(predictions, references, probs)]
        metrics = fact_metrics(scores)
        return metrics if answer_probs else {"accuracy": metrics["accuracy"]}
