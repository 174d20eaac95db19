"""The `hf:` backend on a tiny random model (tests/tiny_model.py): every request's log-likelihood
equals a direct transformers computation (the sum of the log-softmax at the continuation's
tokens, lm-eval's split of context and continuation), whatever the batch size, with or without
shared-prefix reuse and after out-of-memory back-off; choices that are one token each share
one forward row; and a whole pytest run through the plugin scores with those same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from quiz_project import EXPECTED, read_jsonl, run, write_quiz

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pytest_lmeval.core.requests import Request  # noqa: E402
from pytest_lmeval.models.hf.backend import HFBackend  # noqa: E402
from pytest_lmeval.models.hf.cpu import CpuTuning  # noqa: E402
from pytest_lmeval.models.hf.device import tuning_for  # noqa: E402
from pytest_lmeval.models.hf.scorer import Scorer, TokenBudget  # noqa: E402
from pytest_lmeval.models.hf.tuning import Tuning  # noqa: E402
from pytest_lmeval.models.spec import ModelSpec  # noqa: E402

FEWSHOT = "Question: What is the capital of France?\nAnswer: Paris\n\n" * 3
QUESTIONS = [
    FEWSHOT + "Question: The quick brown fox jumps over the lazy dog?\nAnswer:",
    FEWSHOT + "Question: Science questions about plants?\nAnswer:",
]
SINGLE = [" B", " C", " D", " no"]  # one token each with the tiny tokenizer (checked below)
MULTI = [" the capital of France", " Paris and the sun", " water, energy and the sun."]
PAIRS = [
    *[(q, c) for q in QUESTIONS for c in SINGLE],
    *[(QUESTIONS[0], c) for c in MULTI],
    ("The quick brown fox jumps over the lazy", " dog."),
    ("A B C D yes no", " true false the a an of to in is it that"),
    ("", "The quick brown fox"),  # empty context: scored after the prefix token
]


def _requests(pairs: list[tuple[str, str]]) -> list[Request]:
    return [Request.loglikelihood(ctx, cont) for ctx, cont in pairs]


def _backend(folder: Path, batch_size: int | str, **args: Any) -> HFBackend:
    return HFBackend(ModelSpec("hf", str(folder), args), device="cpu", batch_size=batch_size)


def _direct(folder: Path, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, every continuation token greedy) per pair, computed
    with transformers alone, one unpadded sequence at a time."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for ctx, cont in pairs:
        if ctx:
            ctx_ids = tok(ctx)["input_ids"]
            whole = tok(ctx + cont)["input_ids"]
        else:
            ctx_ids = [tok.bos_token_id]
            whole = ctx_ids + tok(cont)["input_ids"]
        cont_ids = whole[len(ctx_ids) :]
        with torch.no_grad():
            logits = model(torch.tensor([whole[:-1]])).logits[0]
        logprobs = torch.log_softmax(logits[len(ctx_ids) - 1 :].double(), dim=-1)
        target = torch.tensor(cont_ids)
        ll = float(logprobs.gather(-1, target.unsqueeze(-1)).sum())
        out.append((ll, bool((logprobs.argmax(-1) == target).all())))
    return out


@pytest.fixture(scope="module")
def direct(tiny_model: Path) -> list[tuple[float, bool]]:
    return _direct(tiny_model, PAIRS)


def _score(backend: HFBackend) -> list[tuple[float, bool]]:
    return backend.loglikelihood(_requests(PAIRS), lambda n: None)


def _close(got: list[tuple[float, bool]], want: list[tuple[float, bool]], tol: float = 1e-5, pairs=PAIRS) -> None:
    assert len(got) == len(want)
    for (ll, greedy), (ll_want, greedy_want), pair in zip(got, want, pairs[: len(got)], strict=True):
        assert abs(ll - ll_want) < tol, (pair, ll, ll_want)
        assert greedy == greedy_want, pair


def test_loglikelihoods_equal_direct_transformers(tiny_model: Path, direct) -> None:
    plain = _backend(tiny_model, 4, prefix_reuse=False)
    _close(_score(plain), direct)
    reuse = _backend(tiny_model, 4)  # the default: a shared prefix runs once, its KV cache reused
    _close(_score(reuse), direct)
    assert reuse.scorer.forward_tokens < plain.scorer.forward_tokens  # the reuse path did run


def test_batch_sizes_agree(tiny_model: Path, direct) -> None:
    by_size = {size: _score(_backend(tiny_model, size)) for size in (1, 4, "auto")}
    for got in by_size.values():
        _close(got, by_size[1])
        _close(got, direct)


def _count_rows(model: torch.nn.Module) -> list[int]:
    """Rows of every forward pass the model runs from now on."""
    rows: list[int] = []

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args else kwargs["input_ids"]
        rows.append(int(ids.shape[0]))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return rows


# Four questions of different lengths under one few-shot block, three multi-token choices each:
# the block is one prefix, each question's text another under it.
NESTED = [
    (FEWSHOT + f"Question: {q}\nAnswer:", c)
    for q in (
        "Which gas do plants take in from the air to make their food?",
        "What is the quick brown fox said to jump over in the old typing exercise?",
        "Name the star at the centre of the solar system, the one the Earth goes around?",
        "Where does water go when a puddle dries in the sun on a warm summer day?",
    )
    for c in (" carbon dioxide and water", " the lazy dog again", " the sun, of course")
]


def test_sibling_prefixes_run_together_and_score_as_direct_transformers(tiny_model: Path) -> None:
    backend = _backend(tiny_model, "auto")
    rows = _count_rows(backend.model)
    got = backend.loglikelihood(_requests(NESTED), lambda n: None)
    _close(got, _direct(tiny_model, NESTED), pairs=NESTED)
    # the few-shot block once, the four questions' texts (in passes cut to pad little), then
    # the twelve choices together, each on its own question's cached prefix
    assert rows[0] == 1 and sum(rows[1:-1]) == 4 and len(rows) <= 4 and rows[-1] == 12
    plain = _backend(tiny_model, "auto", prefix_reuse=False)
    _close(plain.loglikelihood(_requests(NESTED), lambda n: None), got, pairs=NESTED)
    assert backend.scorer.forward_tokens < plain.scorer.forward_tokens


def test_single_token_choices_share_one_forward_row(tiny_model: Path, direct) -> None:
    backend = _backend(tiny_model, 64, prefix_reuse=False)
    for q in QUESTIONS:
        for c in SINGLE:
            assert len(backend.encode_pair(q, c).continuation) == 1, c
    assert all(len(backend.encode_pair(QUESTIONS[0], c).continuation) > 1 for c in MULTI)
    rows = _count_rows(backend.model)
    n_single = len(QUESTIONS) * len(SINGLE)
    got = backend.loglikelihood(_requests(PAIRS[: n_single + len(MULTI)]), lambda n: None)
    _close(got, direct[: n_single + len(MULTI)])
    # one row per question for its four one-token choices, one per multi-token choice
    assert sum(rows) == len(QUESTIONS) + len(MULTI)


def test_auto_batch_size_backs_off_on_out_of_memory(tiny_model: Path, direct) -> None:
    backend = _backend(tiny_model, "auto", prefix_reuse=False)
    rows = _count_rows(backend.model)

    def oom_above_two_rows(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args else kwargs["input_ids"]
        if ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    backend.model.register_forward_pre_hook(oom_above_two_rows, with_kwargs=True)
    _close(_score(backend), direct)
    assert max(rows) > 2  # it tried a batch too big, then finished in smaller ones
    assert backend.scorer.budget.hit_oom

    fixed = _backend(tiny_model, 8, prefix_reuse=False)
    fixed.model.register_forward_pre_hook(oom_above_two_rows, with_kwargs=True)
    with pytest.raises(torch.OutOfMemoryError):  # a fixed batch size is the user's word: no back-off
        _score(fixed)


def test_plugin_run_scores_with_the_models_loglikelihoods(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_quiz(pytester.path)
    result = run(
        pytester, "evals", "--data-dir", "data", "--model", f"hf:{tiny_model}", "--device", "cpu",
        "--batch-size", "3", "--output-path", "out", "--log-samples",
    )  # fmt: skip
    assert result.ret == 0
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines([f"lmeval: loading hf:{tiny_model} ..."])
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    request_tokens: dict[tuple[str, str], int] = {}
    for task, rows in EXPECTED.items():
        samples = read_jsonl(pytester.path / "out" / "samples" / f"{task}.jsonl")
        for sample, (row, _, _) in zip(samples, rows, strict=True):
            prompt = f"Q: {row['question']}\nA:"
            lls = []
            for choice in row["choices"]:
                ctx_ids = tok(prompt)["input_ids"]
                whole = tok(prompt + " " + choice)["input_ids"]
                request_tokens[prompt, choice] = len(whole)
                with torch.no_grad():
                    logits = model(torch.tensor([whole[:-1]])).logits[0]
                logprobs = torch.log_softmax(logits[len(ctx_ids) - 1 :].double(), dim=-1)
                lls.append(float(logprobs.gather(-1, torch.tensor(whole[len(ctx_ids) :]).unsqueeze(-1)).sum()))
            got = [float(r[0]) for r in sample["filtered_resps"]]
            assert got == pytest.approx(lls, abs=1e-5)
            best = max(range(len(lls)), key=lambda i: lls[i])
            assert sample["acc"] == float(best == row["label"])
    # the run's token figures: every unique request's tokens, and what the model really ran
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    engine = doc["engine"]
    assert engine["tokens"] == sum(request_tokens.values())
    # where the run's time went: model load, model work and scoring, within the whole run
    parts = [doc["model_info"]["load_seconds"], engine["model_seconds"], doc["scoring_seconds"]]
    assert all(isinstance(x, float) and x > 0 for x in parts)
    assert sum(parts) <= float(doc["total_evaluation_time_seconds"])
    assert engine["forward_tokens"] > 0
    result.stdout.re_match_lines([rf"lmeval: .* computed in .*s \({engine['tokens']} tokens, \d+ tokens/s.*\)$"])
    assert (
        f"{engine['tokens'] / engine['model_seconds']:.1f} tokens per second"
        in (pytester.path / "out" / "report.html").read_text()
    )


def test_batched_generation_stops_each_row_at_its_own_stop_sequence(tiny_model: Path) -> None:
    """Rows of one batch that stop on different sequences: the batch ends when the slowest row
    stops, not at max_gen_toks, and every text equals its batch-1 generation. (Passes are
    counted without prompt lookup, whose drafts make a row take fewer passes.)"""
    until = ["ow D", "EE", " What"]  # what the tiny random model writes, at different points
    prompts = [QUESTIONS[0][-48:], "Question: Science", "water", "Paris and", "the sun", "A B C"]
    single = _backend(tiny_model, 1, prompt_lookup=0)
    free = [Request.generate_until(p, {"until": [], "max_gen_toks": 48}) for p in prompts]
    uncut = single.generate_until(free, lambda n: None)
    first_stop = {min(until, key=lambda u: (u not in t, t.find(u))) for t in uncut}
    assert len(first_stop) > 1  # the rows do stop on different sequences

    reqs = [Request.generate_until(p, {"until": until, "max_gen_toks": 48}) for p in prompts]
    steps, texts = [], []
    calls = _count_rows(single.model)
    for req in reqs:
        before = len(calls)
        texts += single.generate_until([req], lambda n: None)
        steps.append(len(calls) - before)
    assert min(steps) < max(steps) < 48, steps
    assert _backend(tiny_model, len(reqs)).generate_until(reqs, lambda n: None) == texts  # with lookup
    batched = _backend(tiny_model, len(reqs), prompt_lookup=0)
    calls = _count_rows(batched.model)
    assert batched.generate_until(reqs, lambda n: None) == texts
    # one batch, as many passes as its slowest row; a finished row leaves the batch, so each
    # row runs in exactly as many passes as on its own
    assert len(calls) == max(steps) and calls[0] == len(reqs) and sum(calls) == sum(steps), (calls, steps)


def test_cpu_batches_are_cut_to_pad_little() -> None:
    budget = TokenBudget("auto", tuning_for(torch.device("cpu")))
    # one batch would pad six rows to 50 tokens (300 + one pass); two pad 40 tokens fewer
    assert budget.sizes([50, 48, 10, 10, 10, 9]) == [2, 4]
    # rows of equal width fill batches up to the budget of 2048 tokens
    assert budget.sizes([512] * 9) == [4, 4, 1]
    # leaves on a cached prefix: the tokens they run count for the budget, their cached width
    # (four times the budget at most) for memory
    assert budget.sizes([1000 + 8] * 20, [8] * 20) == [8, 8, 4]
    assert TokenBudget(4, tuning_for(torch.device("cpu"))).sizes([50, 48, 10, 10, 10, 9]) == [4, 2]


def test_the_device_picks_the_tuning() -> None:
    cpu, gpu = tuning_for(torch.device("cpu")), tuning_for(torch.device("cuda", 0))
    assert isinstance(cpu, CpuTuning) and type(gpu) is Tuning
    # a GPU takes one batch at a time, as many rows as the budget holds, and grows the budget
    budget = TokenBudget("auto", gpu)
    assert budget.sizes([50, 48, 10, 10, 10, 9]) == [6]
    assert budget.sizes([4096] * 9) == [4]
    budget.succeeded()
    assert budget.tokens == 2 * gpu.batch_tokens
    # a CPU's budget stays where it started
    budget = TokenBudget("auto", cpu)
    budget.succeeded()
    assert budget.tokens == cpu.batch_tokens


def test_a_gpus_tuning_scores_the_same_on_this_cpu(tiny_model: Path, direct) -> None:
    """The device-neutral path with a GPU's numbers (one batch at a time, no merged prefix
    caches, prefixes reused only where they save a GPU's pass cost) gives the same scores."""
    backend = _backend(tiny_model, "auto", packed_linear=False)
    budget = TokenBudget("auto", Tuning(backend.device))
    backend.scorer = Scorer(backend.model, backend.max_length, budget, None, prefix_reuse=True)
    _close(_score(backend), direct)


def test_models_that_bypass_their_output_module_score_the_same(tiny_model: Path, direct) -> None:
    """The output projection normally sees only the scored positions; a model whose forward
    does not go through get_output_embeddings() (or has none) is scored from its full logits."""
    backend = _backend(tiny_model, 4)
    backend.model.get_output_embeddings = lambda: None
    _close(_score(backend), direct)
