"""The model fingerprint: the half of every cache key that says which model answered.

Answers depend on the weights, the tokenizer, the answer-changing model args, the libraries
that run them and this package's own answer code; never on where or how fast the model runs.
Local files are keyed by their content, hub names by the commit they resolve to, so a changed
checkpoint in the same folder never reuses stale answers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..core.errors import LmevalError
from ..core.files import atomic_write, default_cache_dir
from ..models.registry import API_BACKENDS
from ..models.spec import REDACTED, ModelSpec, is_secret, redact_args

# The version of the code that computes an answer (tokenization, scoring, generation, in every
# backend). Part of every cache key: bump it with any change that can change an answer, and
# regenerate tests/data/answer_code_version.json (tests/test_answer_code_version.py says how).
ANSWER_CODE_VERSION = 1


# Model args that change where or how fast a model runs, not what it answers.
_NOT_IN_FINGERPRINT = {
    "batch_size",
    "device",
    "device_map",
    "parallelize",
    "max_memory",
    "prefix_reuse",
    "prompt_lookup",
    "packed_linear",
    "num_concurrent",
    "max_retries",
    "timeout",
    "api_key_env",
    "backoff",
    "max_backoff",
    "verify_certificate",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "data_parallel_size",
    "delay",
    "cache_dir",
    "local_files_only",
}


_HASH_LIMIT = 4 << 30  # local weights up to 4 GiB are hashed by content, larger by size+mtime


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".gguf", ".model", ".pt", ".pth")


# What a tokenizer is made of, wherever it lives (transformers' file names).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)


_LIBRARIES = {"hf": ("torch", "transformers", "tokenizers"), "vllm": ("vllm", "transformers", "tokenizers")}


_SETTLED_S = 2.0  # a file changed more recently than this may change again within its timestamp


class _StatIdentity(NamedTuple):
    """What changes whenever a file's content can have changed: its inode (a new download or a
    replacing copy), size, and modification and status-change times (any write; the status
    change time cannot be set back). The name too: the digest hashes it, and links of two
    names may lead to one file."""

    name: str
    resolved: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _stat_identity(path: Path) -> _StatIdentity:
    st = path.stat()
    resolved = str(path.resolve())
    return _StatIdentity(str(path), resolved, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest_store(key: tuple) -> Path:
    return default_cache_dir() / "file-digests" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def _file_identity(paths: list[Path]) -> str:
    """The files' content hash (names and bytes; over _HASH_LIMIT, names, sizes and mtimes).

    Hashing reads every byte (0.4 s for SmolLM2's 540 MB, seconds for a few GiB, in every
    process of every run), so a digest is also kept on disk under the files' stat identities
    and reused while none of them changed. A file changed within the last _SETTLED_S seconds
    is hashed again next time: a write in the same timestamp tick would not show in its times
    (git's "racy" index entries)."""
    key = tuple(sorted(_stat_identity(p) for p in paths))
    stored = _digest_store(key)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        known = stored.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    digest = hashlib.sha256()
    total = sum(ident.size for ident in key)
    for ident in key:
        path = Path(ident.name)
        digest.update(path.name.encode())
        if total <= _HASH_LIMIT:
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(f"{ident.size}:{ident.mtime_ns}".encode())
    settled = time.time_ns() - int(_SETTLED_S * 1e9)
    if all(max(k.mtime_ns, k.ctime_ns) < settled for k in key) and key == tuple(sorted(map(_stat_identity, paths))):
        with contextlib.suppress(OSError):  # a read-only cache folder: hashed again next time
            atomic_write(stored, digest.hexdigest())
    return digest.hexdigest()


def _weights(path: Path, args: dict[str, Any]) -> str | None:
    if path.is_file():
        files = [path]
    else:
        folder = path / str(args.get("subfolder") or "")
        gguf = args.get("gguf_file")
        files = [folder / str(gguf)] if gguf else [p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES]
    files = [f for f in files if f.is_file()]
    return _file_identity(files) if files else None


def _tokenizer_files(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    files = [folder / n for n in _TOKENIZER_FILES if (folder / n).is_file()]
    extra = folder / "additional_chat_templates"
    files += sorted(extra.glob("*.jinja")) if extra.is_dir() else []
    return _file_identity(files) if files else None


def _source_parts(name: str, args: dict[str, Any], what: str, *, tokenizer: bool) -> dict[str, Any]:
    """A model (or tokenizer, or adapter) named by a local path or a hub id: its hub commit, or
    the hash of its local files."""
    from ..models.hub import model_source

    source = model_source(name, args, what)
    if isinstance(source, Path):
        out: dict[str, Any] = {"weights_sha256": _weights(source, args)} if not tokenizer else {}
        tok = _tokenizer_files(source if source.is_dir() else source.parent)
        if tok:
            out["tokenizer_sha256"] = tok
        return out
    return {"commit": source.commit, "resolved_offline": source.offline}


def _libraries(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in names:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def answer_args(spec: ModelSpec) -> dict[str, Any]:
    """The model args that can change an answer (never secrets, never where or how fast; a URL's
    password and secret query parameters redacted)."""
    kept = {k: v for k, v in sorted(spec.args.items()) if k not in _NOT_IN_FINGERPRINT and not is_secret(k, v)}
    return redact_args(kept)


def fingerprint_parts(spec: ModelSpec) -> dict[str, Any]:
    """What the answers depend on: backend, name, the answer-changing args, the resolved hub
    commit or the local weights' and tokenizer's hashes, library versions, and our own
    ANSWER_CODE_VERSION. Raises LmevalError for a model that cannot be found."""
    args = answer_args(spec)
    parts: dict[str, Any] = {
        "backend": spec.backend,
        "name": spec.name,
        "args": args,
        "answer_code_version": ANSWER_CODE_VERSION,
    }
    what = f"--model {spec.label}"
    if spec.backend in ("hf", "vllm"):
        parts.update(_source_parts(spec.name, spec.args, what, tokenizer=False))
        if "commit" in parts:  # the commit is what a revision (branch, tag or sha) resolved to
            args.pop("revision", None)
        if args.get("tokenizer"):
            what = f"--model-args tokenizer={args['tokenizer']!r}"
            parts["tokenizer"] = _source_parts(str(args["tokenizer"]), {}, what, tokenizer=True)
        if args.get("peft"):
            parts["peft"] = _source_parts(str(args["peft"]), {}, f"--model-args peft={args['peft']!r}", tokenizer=False)
        parts["libraries"] = _libraries(_LIBRARIES[spec.backend])
    elif spec.backend in API_BACKENDS:  # the server's own identity is added by the cache (see ResponseCache)
        tokenizer = args.get("tokenizer") or args.get("pretrained")
        kind = str(args.get("tokenizer_backend", "huggingface" if tokenizer or "chat" not in spec.backend else "none"))
        if kind.lower() == "huggingface":  # tokenizes locally: its files and library change the prompts
            with contextlib.suppress(LmevalError):  # a tokenizer that cannot be found fails the backend's load
                parts["tokenizer"] = _source_parts(str(tokenizer or spec.name), {}, "tokenizer", tokenizer=True)
            parts["libraries"] = _libraries(("transformers", "tokenizers"))
        elif kind.lower() == "tiktoken":
            parts["libraries"] = _libraries(("tiktoken",))
    return parts


def fingerprint_of(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def fingerprint(spec: ModelSpec) -> str:
    """The cache key's model half (see fingerprint_parts)."""
    return fingerprint_of(fingerprint_parts(spec))


def fingerprint_record(backend: str | None, name: str | None, args: dict[str, Any]) -> dict[str, Any] | None:
    """The fingerprint's parts for results.json: which weights, tokenizer and code produced the
    numbers (args as reports show them, secrets already redacted), for a run whose answers no
    cache keyed (a cache's own record is `ResponseCache.record`)."""
    if backend is None or name is None:
        return None
    spec = ModelSpec(backend, name, {k: v for k, v in args.items() if v != REDACTED})
    try:
        parts = fingerprint_parts(spec)
    except Exception as exc:  # noqa: BLE001 - the record must not lose the run's results
        return {"backend": backend, "name": name, "error": str(exc)}
    if backend in API_BACKENDS:  # no cache keyed the answers by a stated identity (ResponseCache.record has it)
        parts["server_identity"] = None
    return {**parts, "key": fingerprint_of(parts)}
