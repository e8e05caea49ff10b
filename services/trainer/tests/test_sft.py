"""Supervised fine-tuning on real small models (CPU): assistant-only loss, store checkpoints, final model, resume."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from warrior.common.store import LocalStore, ObjectStore
from warrior.trainer.checkpoints import MARKER, RunCheckpoints
from warrior.trainer.config import TrainConfig, parse_train_config
from warrior.trainer.data import to_prompt_completion

ROOT = Path(__file__).resolve().parents[3]
SMOLLM2 = ROOT / "models" / "hf" / "SmolLM2-135M-Instruct"
GEMMA = ROOT / "models" / "hf" / "gemma-3-270m"
PROGRESS = re.compile(r"^step (\d+)/(\d+) loss (\d+\.\d+) lr \S+ (\d+\.\d+) steps/s$")

pytestmark = pytest.mark.model


def _rows(n: int = 12) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Write a Python function add{i}(a, b) that returns the sum."},
                {"role": "assistant", "content": f"def add{i}(a, b):\n    return a + b"},
            ],
            "lineage": {"instruction_id": f"i{i:03d}", "winner": "qwen", "attacker": "smol"},
        }
        for i in range(n)
    ]


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


def _config(base: Path, **training: Any) -> dict[str, Any]:
    return {
        "base_model": str(base),
        "output": "smol-arena",
        "dataset": {"name": "tiny"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {
            "max_steps": 4,
            "save_steps": 2,
            "logging_steps": 1,
            "per_device_batch_size": 2,
            "max_seq_length": 64,
            "learning_rate": 1e-3,
            "gradient_checkpointing": False,
            **training,
        },
    }


def _label_text(trainer: Any, example: dict[str, Any]) -> tuple[str, str]:
    """(the whole training sequence, the tokens that count in the loss) of one example, as text."""
    batch = trainer.data_collator([example])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tokenizer = trainer.processing_class
    trained = [t for t, label in zip(ids, labels, strict=True) if label != -100]
    assert [label for label in labels if label != -100] == trained  # labels are the tokens themselves
    return tokenizer.decode(ids), tokenizer.decode(trained)


def test_only_the_assistant_turn_is_in_the_loss(tmp_path: Path) -> None:
    from warrior.trainer.sft import build_trainer

    config = parse_train_config(_config(SMOLLM2))
    rows = _rows(2)
    trainer = build_trainer(config, to_prompt_completion(rows), tmp_path / "out")
    whole, trained = _label_text(trainer, trainer.train_dataset[0])

    # The sequence is the conversation in SmolLM2's own chat format...
    expected = trainer.processing_class.apply_chat_template(rows[0]["messages"], tokenize=False)
    assert whole == expected
    # ...and only the answer, with the end-of-turn token that teaches the model to stop, is learnt.
    assert trained == "def add0(a, b):\n    return a + b<|im_end|>\n"
    assert "Write a Python function" not in trained and "SmolLM" not in trained


def test_chatml_teaches_a_base_model_to_end_its_turn(tmp_path: Path) -> None:
    """gemma-3-270m has no chat template: `chatml` adds the turn tokens, and training makes them predictable."""
    import torch

    from warrior.trainer.sft import build_trainer

    config = parse_train_config(
        _config(GEMMA, max_steps=3, save_steps=100) | {"chat_template": "chatml", "output": "gemma-arena"}
    )
    examples = to_prompt_completion(_rows(6))
    trainer = build_trainer(config, examples, tmp_path / "out")
    tokenizer = trainer.processing_class
    assert tokenizer.eos_token == "<|im_end|>"
    whole, trained = _label_text(trainer, trainer.train_dataset[0])
    assert whole.startswith("<bos><|im_start|>user\nWrite a Python function add0")
    assert trained == "def add0(a, b):\n    return a + b<|im_end|>\n"

    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    probe = tokenizer.apply_chat_template(
        examples[1]["prompt"] + examples[1]["completion"], tokenize=True, return_dict=True, return_tensors="pt"
    )["input_ids"]
    ids = probe[0].tolist()
    position = len(ids) - 2 - ids[::-1].index(end)  # the answer's last token, which must predict <|im_end|>

    def p_end() -> float:
        trainer.model.eval()
        with torch.no_grad():
            logits = trainer.model(input_ids=probe).logits[0, position].float()
        return float(torch.softmax(logits, dim=-1)[end])

    before = p_end()
    trainer.train()
    after = p_end()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    # The new token's embedding and output row are trained: the model now ends its answer with it.
    assert before < 0.01 and after > 0.3, (before, after)


def test_short_lora_run_writes_complete_checkpoints_and_a_final_model(
    tmp_path: Path, warrior_env: dict[str, str]
) -> None:
    from warrior.trainer.sft import TRAIN_RECORD, train

    store = LocalStore(tmp_path / "store")  # the store warrior_env points the worker at
    publish_dataset(store, "tiny", "v1", _rows())
    config = parse_train_config(_config(SMOLLM2))
    lines: list[str] = []
    result = train(config, store, work_dir=tmp_path / "work", progress=lines.append)

    assert result.steps == 4 and result.dataset_version == "v1" and result.resumed_from is None
    assert [step for step, _ in result.losses] == [1, 2, 3, 4]
    assert all(math.isfinite(loss) for _, loss in result.losses)
    assert result.losses[-1][1] < result.losses[0][1]  # it learns
    progress = [m for m in map(PROGRESS.match, lines) if m]
    assert [int(m.group(1)) for m in progress] == [1, 2, 3, 4] and all(m.group(2) == "4" for m in progress)

    run = RunCheckpoints(store, "smol-arena", result.run)
    run.join()
    assert run.complete_steps() == [2, 4]
    step = store.get_json(run.step_prefix(2) + MARKER)
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(step["files"])

    final = store.get_json(result.final_key + MARKER)
    assert result.final_key == f"checkpoints/smol-arena/{result.run}/final/"
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", TRAIN_RECORD} <= set(
        final["files"]
    )
    assert "adapter_config.json" not in final["files"]  # LoRA merged into full weights
    assert json.loads(store.get(result.final_key + "config.json"))["dtype"] == "bfloat16"  # as published
    record = json.loads(store.get(result.final_key + TRAIN_RECORD))
    assert record["dataset"] == {"name": "tiny", "version": "v1"} and record["steps"] == 4

    # The same config again: recognised as done, nothing trained.
    again: list[str] = []
    rerun = train(config, store, work_dir=tmp_path / "work", progress=again.append)
    assert rerun.already_trained and rerun.final_key == result.final_key and rerun.steps == 4
    assert not any(PROGRESS.match(line) for line in again)

    # The Celery task of queue `train` with the same config: it answers with the final model's key.
    from warrior.trainer.worker import train as train_task

    assert train_task.apply(args=[_config(SMOLLM2)]).get() == result.final_key


def _cli(config: Path, env: dict[str, str], log: Path, summary: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "warrior.trainer.main", "--config", str(config), "--summary", str(summary)]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _complete_steps(store: LocalStore) -> list[str]:
    return [k for k in store.list("checkpoints/") if re.search(r"/step-\d+/" + MARKER + "$", k)]


def test_killed_run_resumes_from_its_last_complete_checkpoint(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    publish_dataset(store, "tiny", "v1", _rows())
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(_config(SMOLLM2, max_steps=8, save_steps=2)))
    env = dict(os.environ) | {"WARRIOR_STORE_URL": store.url, "WARRIOR_HOME": str(tmp_path / "home")}

    first = _cli(config_file, env, tmp_path / "first.log", tmp_path / "first.json")
    deadline = time.monotonic() + 300
    while not _complete_steps(store):
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / "first.json").exists()

    config = TrainConfig.model_validate(yaml.safe_load(config_file.read_text()))
    run = RunCheckpoints(store, config.output, config.run_id("v1"))
    run.join()
    killed_at = run.latest_step()
    assert killed_at is not None and killed_at < 8
    # A later step that was being uploaded when the process died: files, no marker. It must be ignored.
    store.put(run.step_prefix(killed_at + 1) + "adapter_model.safetensors", b"half an upload")

    second = _cli(config_file, env, tmp_path / "second.log", tmp_path / "second.json")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    output = (tmp_path / "second.log").read_text()
    assert f"resumed from step {killed_at} " in output
    steps = [int(m.group(1)) for m in map(PROGRESS.match, output.splitlines()) if m]
    assert steps == list(range(killed_at + 1, 9)), output  # continued, did not start over
    # Off a terminal, the command logs its progress (JSON lines by default): counts from the resumed step on.
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    bar = [r for r in records if r["logger"] == "warrior.progress"]
    assert bar and all(r["service"] == "trainer" and r["total"] == 8 and r["done"] > killed_at for r in bar), bar
    assert bar[-1]["message"].startswith("train: 8/8 steps (100%) ["), bar
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["resumed_from"] == killed_at and summary["steps"] == 8
    assert [s for s, _ in summary["losses"]] == list(range(1, 9))  # the first run's losses are in the history
    assert run.latest_step() == 8 and run.final_marker() is not None
