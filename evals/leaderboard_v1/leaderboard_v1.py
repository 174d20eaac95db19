"""The Open LLM Leaderboard's first recipe (2023-2024): six benchmarks, each at its own n-shot
and with its own headline score, and `average`, their unweighted mean:

| task | n-shot | score |
|---|---:|---|
| arc_challenge | 25 | acc_norm |
| hellaswag | 10 | acc_norm |
| truthfulqa_mc2 | 0 | mc2 (reported as acc) |
| mmlu | 5 | acc (the group, weighted by subject size) |
| winogrande | 5 | acc |
| gsm8k | 5 | exact_match, strict-match |

`pytest --tasks leaderboard_v1 --model hf:...` runs the tasks this library defines, at the
n-shot above (do not pass --num-fewshot). Few-shot runs need the train splits of HellaSwag,
Winogrande and GSM8K in the data mirror.
"""

import pytest_lmeval as lm

HEADLINE = {
    "arc_challenge": "acc_norm,none",
    "hellaswag": "acc_norm,none",
    "truthfulqa_mc2": "acc,none",
    "mmlu": "acc,none",
    "winogrande": "acc,none",
    "gsm8k": "exact_match,strict-match",
}
SHOTS = {"arc_challenge": 25, "hellaswag": 10, "truthfulqa_mc2": 0, "mmlu": 5, "winogrande": 5, "gsm8k": 5}

leaderboard_v1 = lm.group("leaderboard_v1", list(SHOTS), metrics=(), average=HEADLINE, num_fewshot=SHOTS)
