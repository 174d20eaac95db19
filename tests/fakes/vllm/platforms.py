"""vLLM's platform: the stand-in plays a GPU build (the CPU build's memory sizing is tested on
the real one, tests/test_vllm_real.py)."""


class _Platform:
    def is_cpu(self) -> bool:
        return False


current_platform = _Platform()
