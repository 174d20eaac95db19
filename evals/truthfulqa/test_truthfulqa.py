"""TruthfulQA (Lin et al., 2022), multiple-choice: 817 questions that many people answer wrongly,
each prompted after lm-eval's fixed six-question QA primer, zero-shot.

truthfulqa_mc1: acc, one right answer among the choices. truthfulqa_mc2: lm-eval's mc2, the
probability mass the model puts on the true answers (log-likelihoods exponentiated and
normalised over all choices; utils.process_results_mc2), reported as `acc`.

Prompts, few-shot sampling and metrics are lm-evaluation-harness 0.4's; the task YAML beside this
file is its own. Each document is one item, `test_truthfulqa[<task>-<doc index>]`.
"""


def test_truthfulqa(lmeval_doc):
    lmeval_doc.check()
