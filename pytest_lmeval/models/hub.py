"""Which weights a model name means: a local path, or a hub repository pinned to one commit.

The response cache's key (engine/fingerprint.py) and the hf backend's loading both go through `resolve`, so
the answers are stored under the commit the weights were loaded from. With the hub offline
(HF_HUB_OFFLINE=1) the commit is the one the local Hugging Face cache's `refs/<revision>` names;
online, the hub resolves the revision. `check_model` turns a name that cannot load into one
`ERROR:` line before anything loads, an unknown model argument among them. Light on purpose:
no torch, no transformers (imported only to check an argument neither the backend nor the
static list below knows).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import struct
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LmevalError, close_matches
from .spec import redact_args

COMMIT = re.compile(r"^[0-9a-f]{40}$")
HUB_TIMEOUT_S = 10.0
# The names the hf backend takes for `dtype` and `softmax_dtype` (hf.py's table; a test keeps them equal).
DTYPE_NAMES = ("auto", "float32", "float16", "half", "bfloat16")
_DTYPES = ", ".join(DTYPE_NAMES)
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubRevision:
    repo_id: str
    revision: str | None  # as asked (None: the default branch)
    commit: str
    snapshot: Path | None  # the local snapshot folder, when the cache holds it
    offline: bool  # resolved from the local cache, without the hub
    cache_dir: Path


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now rather than at import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any(str(f).strip().lower() in _TRUE for f in flags if f) or bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir(explicit: Any = None) -> Path:
    """Where huggingface_hub keeps repositories, from the environment as it is now."""
    if explicit:
        return Path(os.path.expanduser(str(explicit)))
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(os.path.expanduser(hub))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def is_local(name: str) -> bool:
    """A path (existing, or written as one) rather than a hub repository id."""
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


# The commits hub names resolved to, for the run in progress: a branch that moves during a run
# must not key the cache by one commit and load another. A run opens its own (`pinned_revisions`);
# outside a run every call asks the hub.
_PINS: ContextVar[dict[tuple[str, str | None, str], HubRevision] | None] = ContextVar("hub_pins", default=None)


@contextlib.contextmanager
def pinned_revisions() -> Iterator[None]:
    """Within it, each hub name and revision resolves to one commit, asked once."""
    token = _PINS.set({})
    try:
        yield
    finally:
        _PINS.reset(token)


def resolve(repo_id: str, revision: Any, *, cache_dir: Any = None, token: Any = None, what: str) -> HubRevision:
    """The commit `revision` of `repo_id` means now, or an LmevalError saying why there is none
    (`what` names the argument in the message, e.g. "--model hf:org/name")."""
    rev = None if revision is None else str(revision)
    cache = hub_cache_dir(cache_dir)
    if not hub_offline():
        key = (repo_id, rev, str(cache))
        pins = _PINS.get()
        if pins is not None and key in pins:
            return pins[key]
        found = _ask_hub(repo_id, rev, cache, token, what)
        if found is None:  # the hub cannot be reached: what the local cache has, as transformers does
            return _from_cache(repo_id, rev, cache, what, reason="the hub cannot be reached")
        if pins is not None:
            pins[key] = found
        return found
    return _from_cache(repo_id, rev, cache, what, reason="the hub is offline (HF_HUB_OFFLINE=1)")


def _from_cache(repo_id: str, rev: str | None, cache: Path, what: str, reason: str) -> HubRevision:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=rev, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        asked = f"revision {rev!r} of {repo_id}" if rev else repo_id
        raise LmevalError(
            f"{what}: {asked} is not in the local Hugging Face cache ({cache}) and {reason}: download it "
            f"where the hub is reachable (hf download {repo_id}) and point HF_HOME at that cache, "
            "or pass a local folder"
        ) from None
    return HubRevision(repo_id, rev, folder.name, folder, True, cache)


def _ask_hub(repo_id: str, rev: str | None, cache: Path, token: Any, what: str) -> HubRevision | None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if rev is not None and COMMIT.match(rev):  # a commit is itself: nothing to ask
        commit = rev
    else:
        try:
            info = HfApi().model_info(repo_id, revision=rev, timeout=HUB_TIMEOUT_S, token=token)
        except GatedRepoError:
            raise LmevalError(f"{what}: {repo_id} is gated on the hub: accept its terms and set HF_TOKEN") from None
        except RevisionNotFoundError:
            raise LmevalError(f"{what}: {repo_id} has no revision {rev!r} on the hub") from None
        except RepositoryNotFoundError:
            raise LmevalError(
                f"{what}: {repo_id} not found on the Hugging Face hub (a private one needs HF_TOKEN), "
                "and there is no such local folder"
            ) from None
        except Exception:  # noqa: BLE001 - no network, a proxy, a timeout: fall back to the local cache
            return None
        commit = str(info.sha)
    snapshot = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit
    return HubRevision(repo_id, rev, commit, snapshot if snapshot.is_dir() else None, False, cache)


def model_source(name: str, args: dict[str, Any], what: str) -> Path | HubRevision:
    """The local path `name` means, or its hub revision (LmevalError when it means nothing)."""
    path = Path(os.path.expanduser(name))
    if is_local(name):
        if not path.exists():
            raise LmevalError(f"{what}: no such file or folder: {path.absolute()}")
        return path
    return resolve(name, args.get("revision"), cache_dir=args.get("cache_dir"), token=args.get("token"), what=what)


def pinned_kwargs(name: str, args: dict[str, Any], what: str) -> dict[str, Any]:
    """from_pretrained kwargs that load hub repository `name` from the commit the cache key
    names (resolved as the key was); none for a local path."""
    if is_local(name):
        return {}
    rev = resolve(name, args.get("revision"), cache_dir=args.get("cache_dir"), token=args.get("token"), what=what)
    out: dict[str, Any] = {"revision": rev.commit, "cache_dir": str(rev.cache_dir)}
    if rev.offline:
        out["local_files_only"] = True
    return out


def check_hf_args(label: str, args: dict[str, Any], source: Path | HubRevision) -> None:
    """The hf backend's model args that name files or types, checked before anything loads."""
    for key in ("dtype", "softmax_dtype"):
        value = args.get(key)
        if value is not None and str(value) not in DTYPE_NAMES:
            raise LmevalError(f"--model-args {key}={value!r}: not a dtype the hf backend knows; use one of {_DTYPES}")
    gguf = args.get("gguf_file")
    folder = source if isinstance(source, Path) else source.snapshot
    if gguf and folder is not None and folder.is_dir():
        sub = folder / str(args.get("subfolder") or "")
        if not (sub / str(gguf)).is_file():
            names = sorted(p.name for p in sub.glob("*.gguf"))
            have = f"its .gguf files: {', '.join(names)}" if names else "it holds no .gguf file"
            where = sub if isinstance(source, Path) else f"{label} (snapshot {source.commit[:12]})"
            raise LmevalError(f"--model-args gguf_file={gguf!r}: no such file in {where} ({have})")
    peft = args.get("peft")
    if peft:
        model_source(str(peft), {}, f"--model-args peft={peft!r}")
    tokenizer = args.get("tokenizer")
    if tokenizer:
        model_source(str(tokenizer), {}, f"--model-args tokenizer={tokenizer!r}")
    check_unknown_hf_args(args, source)


# -- model args the hf backend does not know --------------------------------------------------
# The args the hf backend reads itself (hf/backend.py's _OWN_ARGS; a test keeps them equal), and
# those it reads and hands on to from_pretrained.
HF_OWN_ARGS = frozenset(
    ("dtype", "parallelize", "peft", "add_bos_token", "max_length", "tokenizer", "backend", "softmax_dtype",
     "prefix_token_id", "prefix_reuse", "prompt_lookup", "packed_linear", "max_gen_toks")
)  # fmt: skip
HF_PASSED_ARGS = frozenset(
    ("trust_remote_code", "device_map", "revision", "gguf_file", "subfolder", "cache_dir", "token", "local_files_only")
)
# from_pretrained keywords some transformers version takes from **kwargs (or names): with the
# installed version's own (from_pretrained_keywords), so no valid one is refused.
_FROM_PRETRAINED = frozenset(
    ("torch_dtype", "attn_implementation", "low_cpu_mem_usage", "quantization_config", "max_memory",
     "offload_folder", "offload_state_dict", "offload_buffers", "variant", "use_safetensors", "weights_only",
     "output_loading_info", "proxies", "force_download", "resume_download", "code_revision", "adapter_name",
     "adapter_kwargs", "load_in_8bit", "load_in_4bit", "use_flash_attention_2", "tp_plan", "tp_size",
     "device_mesh", "key_mapping", "generation_config", "use_kernels", "kernel_config", "distributed_config",
     "experts_implementation", "disable_mmap", "ignore_mismatched_sizes", "state_dict", "config", "mirror",
     "from_tf", "from_flax", "use_auth_token", "num_labels", "name_or_path")
)  # fmt: skip
_NOT_KEYWORDS = {"pretrained_model_name_or_path", "model_args", "kwargs", "cls", "self"}


def from_pretrained_keywords() -> set[str]:
    """The keywords the installed transformers' `from_pretrained` takes: its signature's, those
    its docstring documents and those its source pops from **kwargs, with other versions'."""
    from transformers import PreTrainedModel

    fn = PreTrainedModel.from_pretrained
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    keys = {p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds}
    keys |= set(re.findall(r"^\s+(\w+) \(`", fn.__doc__ or "", re.M))
    with contextlib.suppress(OSError, TypeError):
        keys |= set(re.findall(r"kwargs\.pop\(\s*[\"'](\w+)[\"']", inspect.getsource(fn)))
    return (keys | _FROM_PRETRAINED) - _NOT_KEYWORDS


def check_unknown_hf_args(args: dict[str, Any], source: Path | HubRevision) -> None:
    """A model arg that neither the hf backend reads nor `from_pretrained` takes (its keywords,
    or an attribute of the model's config, which from_pretrained sets from the rest) as one
    LmevalError naming the close matches, before the model loads. The config is read without
    the weights; where it cannot be (remote code, a hub that does not answer) nothing is refused."""
    known = HF_OWN_ARGS | HF_PASSED_ARGS | _FROM_PRETRAINED
    left = [k for k in args if k not in known]
    if left:
        keywords = from_pretrained_keywords()
        left = [k for k in left if k not in keywords]
    if not left:
        return
    configs = [] if args.get("trust_remote_code") else _model_configs(args, source)
    if not configs:  # its attributes unknown: any of these may be one
        return
    for key in left:
        if not any(hasattr(config, key) for config in configs):
            value = redact_args({key: args[key]})[key]
            names = HF_OWN_ARGS | HF_PASSED_ARGS | keywords | {k for c in configs for k in c.to_dict()}
            hint = close_matches(key, names) or (
                f" (neither the backend's own, a from_pretrained keyword nor a {type(configs[0]).__name__} attribute)"
            )
            raise LmevalError(f"--model-args {key}={value!r}: unknown argument for hf{hint}")


def _model_configs(args: dict[str, Any], source: Path | HubRevision) -> list[Any]:
    """The model's config as from_pretrained builds it, read without the weights (a local
    config.json, a hub repository's alone), or for a GGUF file its architecture's (a llama
    one may load as mistral); none when it cannot be read."""
    import transformers

    folder = source if isinstance(source, Path) else source.snapshot
    sub = str(args.get("subfolder") or "")
    if args.get("gguf_file"):
        kind = gguf_architecture(folder / sub / str(args["gguf_file"])) if folder is not None else None
        kind = _GGUF_TYPES.get(kind, kind.replace("-", "_")) if kind else None
        kinds = [kind, "mistral"] if kind == "llama" else [kind]
        return [transformers.CONFIG_MAPPING[k]() for k in kinds if k in transformers.CONFIG_MAPPING]
    try:
        if folder is None and isinstance(source, HubRevision):  # not downloaded yet: its config.json alone
            from huggingface_hub import hf_hub_download

            file = hf_hub_download(source.repo_id, "config.json", subfolder=sub or None, revision=source.commit,
                                   cache_dir=source.cache_dir, token=args.get("token"))  # fmt: skip
            where = Path(file).parent
        elif folder is not None and (folder / sub / "config.json").is_file():
            where = folder / sub
        else:
            return []
        return [transformers.AutoConfig.from_pretrained(str(where))]
    except Exception:  # noqa: BLE001 - remote code, no network, a broken config: the load says why
        return []


# GGUF architecture names whose transformers model type is spelt otherwise (as its GGUF loader maps them)
_GGUF_TYPES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "t5encoder": "t5"}
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes


def gguf_architecture(file: Path) -> str | None:
    """`general.architecture` from a GGUF file's header, reading only up to it."""
    try:
        with file.open("rb") as fh:

            def number(fmt: str) -> int:
                return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

            def text() -> str:
                return fh.read(number("<Q")).decode("utf-8", "replace")

            if fh.read(4) != b"GGUF" or number("<I") < 2:
                return None
            number("<Q")  # tensors
            for _ in range(min(number("<Q"), 256)):
                key, kind = text(), number("<I")
                if kind == 8:
                    value = text()
                    if key == "general.architecture":
                        return value
                elif kind == 9:
                    item, count = number("<I"), number("<Q")
                    if item == 8:
                        for _ in range(count):
                            fh.seek(number("<Q"), 1)
                    elif item in _GGUF_SIZES:
                        fh.seek(count * _GGUF_SIZES[item], 1)
                    else:
                        return None
                elif kind in _GGUF_SIZES:
                    fh.seek(_GGUF_SIZES[kind], 1)
                else:
                    return None
    except (OSError, struct.error, ValueError):
        return None
    return None
