"""WikiText-2 (Merity et al., 2016) document-level perplexity: each Wikipedia article is scored
whole with lm-eval's disjoint rolling windows (loglikelihood_rolling), after lm-eval's
detokenizer. word_perplexity, byte_perplexity and bits_per_byte are aggregated over the corpus,
weighted by the words and bytes of the original text (preprocess_wikitext.process_results).

To measure any text, copy this folder, point dataset_path at a mirror folder holding your
documents in a `page` column, and keep the rest.

Prompts and metrics are lm-evaluation-harness 0.4's; the task YAML beside this file is its own.
Each document is one item, `test_wikitext[wikitext-<doc index>]`.
"""


def test_wikitext(lmeval_doc):
    lmeval_doc.check()
