"""A stand-in for the parts of vLLM's offline API that pytest-lmeval calls, for CPU tests.

It mirrors vLLM's real names and semantics (checked against vllm/entrypoints/llm.py,
vllm/sampling_params.py, vllm/outputs.py, vllm/logprobs.py and lm-eval's vllm_causallms.py):
`LLM(model, *, tokenizer, tensor_parallel_size, dtype, seed, gpu_memory_utilization,
max_model_len, **engine_args)`, `LLM.generate(prompts, sampling_params, *, use_tqdm,
lora_request)` over `TokensPrompt`s, `llm.llm_engine.model_config.max_model_len`,
`SamplingParams` (keyword-only, unknown fields rejected), and `RequestOutput` /
`CompletionOutput` / `Logprob`. Computation is a transformers model in float32 on the CPU,
greedy only, so answers can be compared with the `hf` backend's.

Put `tests/fakes` first on sys.path to use it; never installed.
"""

from .entrypoints.llm import LLM
from .inputs import TokensPrompt
from .logprobs import Logprob
from .outputs import CompletionOutput, RequestOutput
from .sampling_params import SamplingParams

__version__ = "0.11.0+fake"
__all__ = ["LLM", "CompletionOutput", "Logprob", "RequestOutput", "SamplingParams", "TokensPrompt"]
