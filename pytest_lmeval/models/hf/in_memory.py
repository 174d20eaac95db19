"""The transformers backend over a model already in memory (`evaluate(model=model, tokenizer=tok)`,
the training callback): the same tokenization, scoring and generation as `hf:` (HFBackend's own
code), on the device the model sits on and with its own weights, no second copy.

Nothing of the model changes but its mode: the backend puts it in eval mode (the caller puts it
back, python_api.py), never moves it, never packs its CPU weights for oneDNN or switches its
attention kernel (hf:'s CPU speed-ups replace modules and parameters an optimizer holds), and
gives the tokenizer a pad token on a copy, never the caller's.

The run's cache and results.json know a model by files (engine/fingerprint.py), so the model's
identity is written to a small folder the run names as its model (`hf:FOLDER`): its config and
generation config, its tokenizer's files (the chat template comes from them too) and
`lmeval_state.json`, a SHA-256 over every parameter's and buffer's name, dtype, shape and bytes.
Hashing reads every byte (measured on this project's 2-core CPU: the tiny test model's 170 kB
in 1-8 ms; SmolLM2-135M's 538 MB of float32 in 0.32-0.37 s, about what hashing its files takes,
the same on one thread or two, 0.9-1.0 s while other jobs loaded the machine), so a model over
HASH_LIMIT (4 GiB: some 3 s) is not hashed and its answers are not cached, which one line says.
The folder of a hashed model is kept under the response cache's folder (`in-memory/`), so the
same weights get the same folder and the same cache key (stored_identity).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ...core.errors import LmevalError
from ..spec import ModelSpec
from .backend import HFBackend, _dtype

STATE_FILE = "lmeval_state.json"
HASH_LIMIT = 4 << 30  # bytes of parameters and buffers hashed at most (as local weight files, fingerprint.py)
# --model-args an in-memory model takes: HFBackend's own, less those that load or place a model
ARGS = ("add_bos_token", "max_length", "softmax_dtype", "prefix_token_id", "prefix_reuse", "prompt_lookup",
        "max_gen_toks", "backend")  # fmt: skip


def unwrapped(model: Any) -> Any:
    """The transformers model inside a DistributedDataParallel / DataParallel or torch.compile
    wrapper (the wrapper's forward would synchronize ranks, or recompile on every shape)."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


def model_name(model: Any) -> str:
    """A short name for the model: its checkpoint's last path part, else its class."""
    source = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "").rstrip("/")
    name = source.rsplit("/", 1)[-1] or type(model).__name__
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "model"


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(), *(("buffer:" + n, b) for n, b in model.named_buffers())]


def state_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for _, t in _tensors(model))


def _tensor_digest(item: tuple[str, torch.Tensor]) -> bytes:
    name, tensor = item
    tensor = tensor.detach()
    if tensor.device.type == "meta":
        raise LmevalError(f"parameter {name} is on the meta device (offloaded or sharded): it cannot be hashed")
    flat = tensor.reshape(-1).to("cpu").contiguous()
    digest = hashlib.sha256(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
    if flat.numel():
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.digest()


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (name, dtype, shape, bytes), in the module's order;
    tensors are hashed on threads (hashlib lets go of the GIL), a GPU tensor copied to the host
    one at a time."""
    tensors = _tensors(model)
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        parts = list(pool.map(_tensor_digest, tensors))
    return hashlib.sha256(b"".join(parts)).hexdigest()


def write_identity(folder: Path, model: Any, tokenizer: Any, digest: str | None, why: str | None = None) -> Path:
    """The folder the run names as its model: config, generation config, the tokenizer's files
    and the state's hash (None with `why`: not hashed, and the run caches nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_file"):
        raise LmevalError(f"model: {type(model).__name__} has no transformers config; pass a transformers model")
    config.to_json_file(folder / "config.json")
    generation = getattr(model, "generation_config", None)
    if generation is not None and hasattr(generation, "to_json_file"):
        generation.to_json_file(folder / "generation_config.json")
    tokenizer.save_pretrained(folder)
    dtype = next(model.parameters()).dtype
    state = {"model_class": type(model).__name__, "dtype": str(dtype).removeprefix("torch."), "state_sha256": digest}
    if why:
        state["not_hashed"] = why
    (folder / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
    return folder


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stored_identity(store: Path, model: Any, tokenizer: Any, digest: str) -> Path:
    """The identity folder of a hashed model, kept under the response cache's folder so that
    the same weights get the same folder (its path is part of the cache key):
    `<store>/<key>/<name>/`, the key a hash of its files. Its files are hard links to one copy
    of each content (`<store>/files/<sha256>`): a training run's states share one tokenizer."""
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=store))
    try:
        built = write_identity(tmp / model_name(model), model, tokenizer, digest)
        files = sorted(p for p in built.rglob("*") if p.is_file())
        shas = {p: _file_sha(p) for p in files}
        key = hashlib.sha256("".join(f"{p.relative_to(built)}:{shas[p]}\n" for p in files).encode()).hexdigest()
        final = store / key[:32] / built.name
        if (final / STATE_FILE).is_file():
            return final
        blobs = store / "files"
        blobs.mkdir(exist_ok=True)
        for path in files:  # one copy of each content; a file system without hard links keeps copies
            blob = blobs / shas[path]
            with contextlib.suppress(OSError):
                if not blob.is_file():
                    os.replace(path, blob)
                path.unlink(missing_ok=True)
                os.link(blob, path)
            if not path.is_file():
                shutil.copyfile(blob, path)
        final.parent.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):  # another process stored the same model first: its folder is the same
            os.replace(built, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def identity(model: Any, tokenizer: Any, store: Path | None) -> Iterator[tuple[Path, str | None]]:
    """The model's identity folder for one run, and the line saying why its answers are not
    cached, if they are not. With a `store` (caching on) the state is hashed and the folder
    kept there (stored_identity); a model too large to hash, or one that cannot be (weights
    on the meta device), and caching off get a temporary folder, removed after."""
    digest, why = None, "no_cache"
    if store is not None:
        size = state_bytes(model)
        if size > HASH_LIMIT:
            why = f"{size / (1 << 30):.1f} GiB, over the {HASH_LIMIT >> 30} GiB hashed to key answers"
        else:
            try:
                digest, why = state_digest(model), None
            except LmevalError as exc:
                why = str(exc)
    if digest is not None and store is not None:
        yield stored_identity(store, model, tokenizer, digest), None
        return
    note = None if store is None else f"lmeval: cache: answers not cached: the model in memory is not hashed ({why})"
    with tempfile.TemporaryDirectory(prefix="lmeval-in-memory-") as root:
        yield write_identity(Path(root) / model_name(model), model, tokenizer, None, why), note


def check_args(args: dict[str, Any]) -> None:
    unknown = sorted(set(args) - set(ARGS))
    if unknown:
        raise LmevalError(
            f"model_args {', '.join(unknown)}: not for a model already in memory (it is evaluated as it is, "
            f"where it is); it takes {', '.join(ARGS)}"
        )


class InMemoryBackend(HFBackend):
    """HFBackend around `model` and `tokenizer` as they are (see the module's docstring)."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec, *, batch_size: int | str) -> None:
        started = time.perf_counter()
        args = dict(spec.args)
        check_args(args)
        self.spec = spec
        self.batch_size = batch_size
        self.add_bos_token = args.get("add_bos_token")
        self.softmax_dtype = _dtype(args.get("softmax_dtype"), "softmax_dtype")
        self.model = unwrapped(model)
        if tokenizer.pad_token_id is None:  # _set_up gives it one, as lm-eval does: on a copy of the caller's
            tokenizer = copy.deepcopy(tokenizer)
        self.tokenizer = tokenizer
        config = self.model.config
        self.backend = args.get("backend") or ("seq2seq" if config.is_encoder_decoder else "causal")
        self._set_up(args, adapt=False)
        self.load_seconds = time.perf_counter() - started
        self.loaded_from = "memory"
