"""GGUF models converted once: transformers dequantizes a GGUF file on every load (15-25 s for
SmolLM2-135M on a CPU, plus about 6 s building its tokenizer), so the first load saves the
dequantized model (float32 safetensors) and its tokenizer under

    <cache dir>/converted/<key>/

and later loads read that folder instead. The key is the GGUF file's identity: its size, its
modification time and a SHA-256 of its first and last MiB, with the transformers version (whose
dequantization the folder holds). The weights are the dequantized ones unchanged, and after a
load from the folder they are copied out of the memory-mapped file into memory of their own:
CPU matrix kernels round differently on weights at an odd offset in a mapped file (measured:
a SmolLM2 log-likelihood -0.25807250 mapped, -0.25807303 copied and when dequantized). The
GGUF path's own weights sit at 16-byte offsets that vary from run to run, so its metrics can
move in the ninth digit between two of its own runs (ECE 0.3587372205 and 0.35873725 on
arc_easy); log-likelihoods, accuracies and texts have matched in every comparison.
A load at another dtype uses the folder too (float32 cast to that dtype, as dequantization
casts); only a float32 load writes it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_EDGE = 1 << 20  # bytes hashed at each end of the file
_DONE = "conversion-complete"
_TMP = ".tmp-"  # a conversion in progress: <folder>.tmp-<pid>-<random>


def _cache_root() -> Path:
    from ...core.files import default_cache_dir

    return default_cache_dir() / "converted"


def gguf_key(file: Path) -> str:
    """The file's identity: size, mtime and a hash of its first and last MiB."""
    import transformers

    stat = file.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:{transformers.__version__}:".encode())
    with file.open("rb") as fh:
        digest.update(fh.read(_EDGE))
        fh.seek(max(0, stat.st_size - _EDGE))
        digest.update(fh.read(_EDGE))
    return f"{file.stem}-{digest.hexdigest()[:24]}"


@dataclass
class Redirect:
    path: str  # what to load the config and model from
    tok_path: str
    load_kwargs: dict[str, Any]
    tok_kwargs: dict[str, Any]
    save_to: Path | None = None  # write the conversion here once the model is loaded
    tokenizer_too: bool = False  # the tokenizer came from the GGUF file as well
    converted: bool = False  # loading from a conversion
    gguf: bool = False  # a GGUF file, converted or not

    @property
    def source(self) -> str:
        return "gguf conversion" if self.converted else "gguf" if self.gguf else "checkpoint"


def redirect(path: str, tok_path: str, load_kwargs: dict[str, Any], tok_kwargs: dict[str, Any]) -> Redirect:
    """Where to load from: the conversion of a local GGUF file when there is one."""
    name = load_kwargs.get("gguf_file")
    plain = Redirect(path, tok_path, load_kwargs, tok_kwargs, gguf=bool(name))
    if not name or load_kwargs.get("subfolder") or os.environ.get("LMEVAL_NO_GGUF_CACHE"):
        return plain
    file = Path(path) / name
    if not file.is_file():
        return plain
    folder = _cache_root() / gguf_key(file)
    tokenizer_too = tok_kwargs.get("gguf_file") == name and tok_path == path
    if (folder / _DONE).is_file():
        load = {k: v for k, v in load_kwargs.items() if k not in ("gguf_file", "revision")}
        toks = (
            {k: v for k, v in tok_kwargs.items() if k not in ("gguf_file", "revision")} if tokenizer_too else tok_kwargs
        )
        return Redirect(str(folder), str(folder) if tokenizer_too else tok_path, load, toks, converted=True, gguf=True)
    plain.save_to = folder
    plain.tokenizer_too = tokenizer_too
    return plain


def after_load(model: Any, tokenizer: Any, where: Redirect) -> None:
    """Write the conversion after a first load; after a load from it, give every weight memory
    of its own (see the module's docstring)."""
    if where.converted:
        for param in model.parameters():
            if param.device.type == "cpu":
                param.data = param.data.clone()
    else:
        save_conversion(model, tokenizer, where)


def save_conversion(model: Any, tokenizer: Any, where: Redirect) -> None:
    """Write the dequantized model (and the GGUF file's tokenizer) for later loads. Best effort:
    a failure leaves no folder behind and the next run converts again."""
    import torch

    folder = where.save_to
    if folder is None or next(model.parameters()).dtype != torch.float32:
        return
    if not where.tokenizer_too:
        return  # a conversion holds the file's own tokenizer; with another one, keep converting
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}{_TMP}{os.getpid()}-", dir=folder.parent))
    try:
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # transformers refuses to save a "quantized" model
        with torch.device("meta"):
            plain = type(model)(config)
        plain.load_state_dict(model.state_dict(), strict=True, assign=True)
        plain.tie_weights()
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text("")
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:  # Ctrl-C and stop signals too: never leave half a model behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise


def _remove_abandoned(folder: Path) -> None:
    """Conversions a killed process left half-written (hundreds of MB each): their process is
    gone, so nothing will finish them."""
    for tmp in folder.parent.glob(f"{folder.name}{_TMP}*"):
        pid = tmp.name[len(folder.name) + len(_TMP) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
