"""Running prompts through vLLM: one engine in this process, or data-parallel replicas.

Both take token-id prompts with plain-dict sampling parameters and give back plain `Output`s,
so the backend's request logic is the same either way and what crosses a process boundary is
small, picklable data. Replicas are spawned processes, each pinned to its GPUs through
CUDA_VISIBLE_DEVICES before vLLM is imported; prompts are dealt to them interleaved (long and
short ones spread evenly) and the answers put back in order. This replaces lm-eval's Ray actors:
no Ray dependency, and the engines stay loaded across calls.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import os
import signal
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Params = dict[str, Any]  # keyword arguments of vllm.SamplingParams


@dataclass
class Output:
    prompt_logprobs: list[dict[int, float] | None] | None  # per prompt token; None for the first
    first_logprobs: dict[int, float] | None  # at the first generated token
    token_ids: list[int]  # generated
    text: str


def _floats(entry: Any) -> dict[int, float] | None:
    # vLLM returns Logprob objects (older versions: bare floats)
    return None if entry is None else {int(t): float(getattr(lp, "logprob", lp)) for t, lp in entry.items()}


@contextlib.contextmanager
def _children_without_ctrl_c() -> Iterator[None]:
    """vLLM's engine and worker processes are this process's children, in the terminal's
    foreground group: Ctrl-C reaches each of them too, and they then die on their own, in any
    order, logging tracebacks. Started with SIGINT blocked (a blocked signal stays blocked in a
    child, whatever handler it installs), they leave the stop to this process, which keeps its
    answers and shuts them down (close)."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a Ctrl-C meanwhile arrives now


class LocalRunner:
    """One vLLM engine in this process."""

    def __init__(self, engine_args: dict[str, Any]) -> None:
        import vllm

        self.vllm = vllm
        self.llm = None
        try:
            with _children_without_ctrl_c():
                self.llm = vllm.LLM(**engine_args)
        except BaseException:
            self.close()  # a Ctrl-C held back while the engine started: stop it, then stop
            raise
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def run(self, prompts: list[list[int]], params: list[Params], use_tqdm: bool = True) -> list[Output]:
        """Every prompt in one `generate` call, so vLLM's scheduler batches them all."""
        if not prompts:
            return []
        make = self.vllm.SamplingParams
        outputs = self.llm.generate(
            [self.vllm.TokensPrompt(prompt_token_ids=p) for p in prompts],
            sampling_params=[make(**p) for p in params],
            use_tqdm=use_tqdm,
        )
        result = []
        for out in outputs:
            completion = out.outputs[0]
            plps = None if out.prompt_logprobs is None else [_floats(e) for e in out.prompt_logprobs]
            first = _floats(completion.logprobs[0]) if completion.logprobs else None
            result.append(Output(plps, first, list(completion.token_ids), completion.text))
        return result

    def close(self) -> None:
        """Stop vLLM's engine process now: left to interpreter exit, its threads die with the
        process ("terminate called without an active exception", exit code 134)."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(client, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        gc.collect()


def _replica_main(conn: Any, engine_args: dict[str, Any], devices: str) -> None:
    """A replica process: pin the GPUs, load the engine, answer `run` messages until `stop`."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    try:
        runner = LocalRunner(engine_args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", runner.max_model_len))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            runner.close()
            return
        try:
            conn.send(("ok", runner.run(message[1], message[2], use_tqdm=False)))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class ReplicaPool:
    """`replicas` engines in spawned processes, one group of `tensor_parallel_size` GPUs each."""

    def __init__(self, engine_args: dict[str, Any], replicas: int, gpu_groups: list[list[str]]) -> None:
        ctx = multiprocessing.get_context("spawn")  # a forked CUDA context is unusable
        self.conns = []
        self.procs = []
        for group in gpu_groups[:replicas]:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_replica_main, args=(child, engine_args, ",".join(group)), daemon=False)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        atexit.register(self.close)
        lengths = [self._receive(i) for i in range(len(self.conns))]
        self.max_model_len = int(min(lengths))

    def _receive(self, i: int) -> Any:
        try:
            kind, payload = self.conns[i].recv()
        except EOFError:
            self.close()
            raise RuntimeError(f"vLLM replica {i} exited (exit code {self.procs[i].exitcode})") from None
        if kind == "error":
            self.close()
            raise RuntimeError(f"vLLM replica {i} failed:\n{payload}")
        return payload

    def run(self, prompts: list[list[int]], params: list[Params], use_tqdm: bool = True) -> list[Output]:
        n = len(self.conns)
        for i, conn in enumerate(self.conns):
            conn.send(("run", prompts[i::n], params[i::n]))
        shares = [self._receive(i) for i in range(n)]
        out: list[Output] = [None] * len(prompts)  # type: ignore[list-item]
        for i, share in enumerate(shares):
            out[i::n] = share
        return out

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs, strict=True):
            if proc.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    conn.send(("stop",))
                proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        self.conns, self.procs = [], []


def gpu_groups(replicas: int, tensor_parallel: int) -> list[list[str]]:
    """GPU ids for each replica: CUDA_VISIBLE_DEVICES (an xdist worker's share), else every GPU
    nvidia-smi lists; CUDA is not initialised here."""
    from ..devices import visible_gpus

    ids = [d.strip() for d in visible_gpus()]
    need = replicas * tensor_parallel
    if len(ids) < need:
        raise ValueError(
            f"data_parallel_size={replicas} x tensor_parallel_size={tensor_parallel} needs {need} GPUs; "
            f"{len(ids)} visible ({','.join(ids) or 'none'})"
        )
    return [ids[r * tensor_parallel : (r + 1) * tensor_parallel] for r in range(replicas)]
