"""Batching of tokenized causal-LM examples: TRL's language-modelling collator.

Right padding; ``labels`` are an example's own (facts: ``-100`` on the prompt, so only the answer
counts) or its ``input_ids``, padded with ``-100``, so padding never counts even where the
tokenizer pads with its end-of-text token, and a real end-of-text token still does.
``LMCollator(pad_token_id)`` builds one.
"""

from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as LMCollator

__all__ = ["LMCollator"]
