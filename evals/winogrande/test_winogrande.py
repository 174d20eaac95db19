"""WinoGrande (Sakaguchi et al., 2019): fill the blank of a sentence with one of two options; acc.

Scored by partial evaluation, as lm-eval does: the two options make two different contexts (the
sentence up to the blank, with each option in it), and the model scores the same continuation
(the rest of the sentence) after each; the option whose context makes the continuation more
likely is the answer. So each document sends two loglikelihood requests that share their
continuation and differ in their context; lm-eval calls this a "multiple input" task, and its
`doc_to_text` gives the index of the right context rather than a question.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_winogrande[winogrande-<doc index>]`.
"""


def test_winogrande(lmeval_doc):
    lmeval_doc.check()
