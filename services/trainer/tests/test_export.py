"""A fine-tuned model exports to an HF folder (transformers/vLLM) and a GGUF file (llama.cpp) that both still answer
the way it was trained to."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from warrior.common.store import LocalStore, ObjectStore
from warrior.trainer import main as cli
from warrior.trainer.checkpoints import MARKER
from warrior.trainer.export import ExportError, export_gguf, find_converter

ROOT = Path(__file__).resolve().parents[3]
SMOLLM2 = ROOT / "models" / "hf" / "SmolLM2-135M-Instruct"
QUESTION = "Write a Python function add7(a, b) that returns the sum."
TRAINED_ANSWER = "def add7(a, b):\n    return a + b"

pytestmark = pytest.mark.model


def publish_dataset(store: ObjectStore, name: str, version: str, rows: list[dict[str, Any]]) -> None:
    """Commit a dataset version the way the dataset builder does: shard first, manifest last."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    shard = f"datasets/{name}/{version}/part-00000.jsonl"
    store.put(shard, data)
    manifest = {
        "name": name,
        "version": version,
        "created_at": time.time(),
        "rows": len(rows),
        "shards": [{"key": shard, "rows": len(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
    }
    store.put_json(f"datasets/{name}/{version}/manifest.json", manifest)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fine-tune SmolLM2 for a few steps with the CLI and export it in both formats."""
    root = tmp_path_factory.mktemp("export")
    store = LocalStore(root / "store")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Write a Python function add{i}(a, b) that returns the sum."},
                {"role": "assistant", "content": f"def add{i}(a, b):\n    return a + b"},
            ],
            "lineage": {"instruction_id": f"i{i:03d}"},
        }
        for i in range(12)
    ]
    publish_dataset(store, "tiny", "v1", rows)
    config = {
        "base_model": str(SMOLLM2),
        "output": "smol-arena",
        "dataset": {"name": "tiny"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {
            "max_steps": 4,
            "save_steps": 4,
            "per_device_batch_size": 2,
            "max_seq_length": 64,
            "learning_rate": 1e-3,
            "gradient_checkpointing": False,
        },
    }
    config_file = root / "train.yaml"
    config_file.write_text(yaml.safe_dump(config))
    argv = ["--config", str(config_file), "--store", store.url, "--work-dir", str(root / "work")]
    argv += ["--export", "hf,gguf", "--export-dir", str(root / "out"), "--summary", str(root / "summary.json")]
    assert cli.main(argv) == 0
    return {"store": store, "root": root, "summary": json.loads((root / "summary.json").read_text())}


def test_exports_are_written_locally_and_committed_to_the_store(exported: dict[str, Any]) -> None:
    summary, store, root = exported["summary"], exported["store"], exported["root"]
    run = summary["run"]
    assert summary["exports"]["hf"] == {"path": str(root / "out" / "hf"), "key": f"exports/smol-arena/{run}/hf/"}
    assert summary["exports"]["gguf"]["path"] == str(root / "out" / "smol-arena-f16.gguf")
    hf_marker = store.get_json(f"exports/smol-arena/{run}/hf/{MARKER}")
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} <= set(hf_marker["files"])
    assert not any(name.startswith("adapter") for name in hf_marker["files"])  # merged, no adapter left
    gguf_marker = store.get_json(f"exports/smol-arena/{run}/gguf/{MARKER}")
    assert set(gguf_marker["files"]) == {"smol-arena-f16.gguf"} and gguf_marker["type"] == "f16"


def test_hf_export_loads_in_transformers_and_answers_as_trained(exported: dict[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(exported["summary"]["exports"]["hf"]["path"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=32, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :]
    assert tokenizer.decode(new, skip_special_tokens=True).strip() == TRAINED_ANSWER
    assert int(new[-1]) == tokenizer.eos_token_id  # it ends its turn by itself


def test_gguf_export_loads_in_llama_cpp_and_answers_as_trained(exported: dict[str, Any]) -> None:
    import llama_cpp

    path = exported["summary"]["exports"]["gguf"]["path"]
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False)
    assert llm.metadata["general.architecture"] == "llama"
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]  # the chat template travels with it
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": QUESTION}], max_tokens=32, temperature=0.0)
    choice = reply["choices"][0]
    assert choice["message"]["content"].strip() == TRAINED_ANSWER
    assert choice["finish_reason"] == "stop"


def test_gguf_export_of_a_folder_that_is_not_a_model_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="missing: .*safetensors"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    assert (find_converter() / "convert_hf_to_gguf.py").is_file()
