"""LAMBADA (Paperno et al., 2016), OpenAI's version: predict the last word of a passage.

acc: the last word is the model's greedy continuation; perplexity: exp of minus the mean
log-likelihood of that word over the documents (lm-eval bootstraps its standard error; we
report none).

Prompts and metrics are lm-evaluation-harness 0.4's; the task YAML beside this file is its own.
Each document is one item, `test_lambada[lambada_openai-<doc index>]`.
"""


def test_lambada(lmeval_doc):
    lmeval_doc.check()
