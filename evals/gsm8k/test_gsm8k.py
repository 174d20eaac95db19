"""GSM8K (Cobbe et al., 2021): grade-school maths word problems whose solutions end in
"#### <number>". The model writes a solution, greedy, until the next "Question:" (or "Q:").

- gsm8k: 5-shot, examples drawn from train with their full worked solutions.
- gsm8k_cot: 8-shot chain of thought, the fixed exemplars of Wei et al. (2022), each ending
  "The answer is N."

Scored by exact_match of the number, under two answer extractions: strict-match (the number
where the format puts it) and flexible-extract (the last number in the text).
"""

import pytest_lmeval as lm

STOPS = ["</s>", "<|im_end|>"]
LAST_NUMBER = lm.regex(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
# Compare numbers, not their formatting: drop commas, dollars, the worked solution before
# "#### ", a final full stop; ignore case.
NUMBER_MATCH = {
    "exact_match": {
        "ignore_case": True,
        "ignore_punctuation": False,
        "regexes_to_ignore": [",", r"\$", "(?s).*#### ", r"\.$"],
    }
}

gsm8k = lm.generate(
    "gsm8k",
    data=lm.hub("openai/gsm8k", "main", split="test"),
    fewshot=lm.fewshot(5, split="train"),
    prompt="Question: {question}\nAnswer:",
    target="answer",
    until=["Question:", *STOPS],
    temperature=0.0,
    filters={
        "strict-match": [lm.regex(r"#### (\-?[0-9\.\,]+)"), "take_first"],
        "flexible-extract": [LAST_NUMBER, "take_first"],
    },
    metric_options=NUMBER_MATCH,
    version=3.0,
    tags=["math_word_problems"],
)

COT_EXAMPLES = [
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
        "there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
        "been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
        "they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
        "Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
        "The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. "
        "How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
        "The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, from monday to "
        "thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
        "were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
        "balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
        "he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
        "left. 23 - 15 is 8. The answer is 8.",
    ),
]

gsm8k_cot = lm.generate(
    "gsm8k_cot",
    data=lm.hub("openai/gsm8k", "main", split="test"),
    fewshot=lm.fewshot(8, sampler="first_n", samples=[{"question": q, "target": a} for q, a in COT_EXAMPLES]),
    prompt="Q: {question}\nA:",
    # the final number of the reference solution; an exemplar's target is its whole rationale
    target=lambda doc: doc["answer"].split("####")[-1].strip() if "answer" in doc else doc["target"],
    until=["Q:", *STOPS],
    sampling={"do_sample": False},
    filters={
        "strict-match": [lm.regex(r"The answer is (\-?[0-9\.\,]+)."), "take_first"],
        "flexible-extract": [LAST_NUMBER, "take_first"],
    },
    metric_options=NUMBER_MATCH,
    version=3.0,
    tags=["chain_of_thought"],
)


@lm.benchmark(gsm8k, gsm8k_cot)
def test_gsm8k(doc):
    doc.score()
