"""Make dense Hugging Face model folders from the demo GGUF files, so vLLM can load them.

transformers reads a GGUF file and dequantizes it; the model is saved in bfloat16 with its
tokenizer and chat template. A folder whose recorded source digest matches the GGUF is skipped,
so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# GGUF file -> folder name.
DEMO = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M-Instruct",
    "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf": "Qwen2.5-Coder-0.5B-Instruct",
    "gemma-3-270m-q4_k_m.gguf": "gemma-3-270m",
}
MARKER = "warrior-source.json"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(gguf: Path, out: Path) -> None:
    marker = out / MARKER
    digest = _digest(gguf)
    if marker.exists() and json.loads(marker.read_text()).get("sha256") == digest:
        print(f"  {out.name}: present, source sha256 ok", flush=True)
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"  {out.name}: converting {gguf.name} (dequantize to bfloat16)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # The loaded model remembers it came from a quantized file and refuses to save until told otherwise.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = out.with_name(out.name + ".partial")
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    (partial / MARKER).write_text(json.dumps({"source": gguf.name, "sha256": digest}) + "\n")
    if out.exists():
        for child in out.iterdir():
            child.unlink()
        out.rmdir()
    partial.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models", help="folder with the GGUF files; HF folders go to <models>/hf/")
    args = parser.parse_args()
    models = Path(args.models)
    print(f"dense HF folders -> {models / 'hf'}/", flush=True)
    for name, folder in DEMO.items():
        gguf = models / name
        if not gguf.is_file():
            sys.exit(f"error: {gguf} is missing; run scripts/fetch_models.py first")
        convert(gguf, models / "hf" / folder)


if __name__ == "__main__":
    main()
