"""``warrior-train``: fine-tune a model on a dataset version; the command of the trainer's Kubernetes Job.

Examples::

    warrior-train --config configs/train.yaml
    warrior-train --config configs/train.yaml --export gguf,hf
    accelerate launch -m warrior.trainer.main --config configs/train.yaml      # several GPUs

The store comes from WARRIOR_STORE_URL (or --store). A rerun of the same file continues from the
run's last complete checkpoint; a finished run is recognised and not trained again. Progress goes
to stdout, one line per logged step: ``step 12/100 loss 1.2345 lr 2.00e-04 0.65 steps/s``.

Exit status: 0 done, 1 failed, 2 bad command line or config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from warrior.common.logs import configure_logging
from warrior.common.settings import Settings
from warrior.common.store import StoreError, open_store
from warrior.dataset_builder.versions import DatasetNotFound
from warrior.trainer.checkpoints import CheckpointError
from warrior.trainer.config import TrainConfigError, load_train_config
from warrior.trainer.data import TrainingDataError
from warrior.trainer.export import ExportError, export_run, parse_formats
from warrior.trainer.templates import ChatTemplateError

# Failures a user can act on from the message alone; anything else shows its traceback.
_EXPECTED = (DatasetNotFound, TrainingDataError, ChatTemplateError, CheckpointError, StoreError, FileNotFoundError)

DESCRIPTION = """\
Supervised fine-tuning (LoRA or full) of a Hugging Face model on a dataset version from the
object store. Checkpoints go to the store as training runs; rerunning the same config resumes
from the last complete one, and a finished run is not trained again."""

EPILOG = """\
config file (every key but base_model, output and dataset.name is optional):
  base_model: models/hf/SmolLM2-135M-Instruct   # Hugging Face model folder
  output: smollm2-arena                           # name of the trained model
  dataset: {name: arena, version: latest}
  method: lora                                    # lora | full
  lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}
  chat_template: auto                             # auto (the tokenizer's) | chatml (base models)
  training: {epochs: 1, max_steps: null, learning_rate: 2.0e-4, per_device_batch_size: 4,
             gradient_accumulation_steps: 1, max_seq_length: 1024, save_steps: 100,
             logging_steps: 10, seed: 0, bf16: auto, gradient_checkpointing: true,
             lr_scheduler: linear, warmup_ratio: 0.0, weight_decay: 0.0}

store layout:
  checkpoints/<output>/<run>/step-<n>/   trainer checkpoints, each committed by a _COMPLETE marker
  checkpoints/<output>/<run>/final/      the trained model, full weights (LoRA merged)
  exports/<output>/<run>/hf/, .../gguf/  with --export

several GPUs: accelerate launch -m warrior.trainer.main --config FILE
exit status: 0 done, 1 failed, 2 bad command line or config
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrior-train",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="training YAML file (keys below)")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the run's last complete checkpoint (default); --no-resume starts over",
    )
    parser.add_argument(
        "--export",
        default="",
        metavar="FORMATS",
        help="after training, export the model: comma-separated 'hf' (safetensors folder for vLLM) "
        "and/or 'gguf' (one file for llama.cpp)",
    )
    parser.add_argument(
        "--gguf-type",
        default="f16",
        choices=["f16", "bf16", "f32", "q8_0"],
        help="tensor type of the GGUF export (default f16)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        metavar="DIR",
        help="where exports go locally (default: <work-dir>/exports/<output>/<run>)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="local scratch space for checkpoints before upload (default: $WARRIOR_HOME/trainer)",
    )
    parser.add_argument("--store", metavar="URL", help="object store URL (default: $WARRIOR_STORE_URL)")
    parser.add_argument("--summary", type=Path, metavar="FILE", help="write the result as JSON to FILE")
    return parser


def _is_main_process() -> bool:
    """False in the extra processes ``accelerate launch`` starts (they train, but never export)."""
    return os.environ.get("RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("trainer")
    try:
        formats = parse_formats(args.export)
    except ValueError as exc:
        parser.error(f"--export: {exc}")
    try:
        config = load_train_config(args.config)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    settings = Settings.from_env()
    work_dir: Path = args.work_dir or settings.home / "trainer"
    try:
        store = open_store(args.store or settings.store_url)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # torch and transformers load only once the command line is known to be good.
    from warrior.trainer.sft import quiet_libraries, train

    quiet_libraries()
    try:
        result = train(config, store, work_dir=work_dir, resume=args.resume)
    except _EXPECTED as exc:
        print(f"error: training failed: {exc}", file=sys.stderr)
        return 1
    if not _is_main_process():
        return 0
    summary: dict[str, Any] = result.to_dict()
    if formats:
        dest = args.export_dir or work_dir / "exports" / config.output / result.run
        try:
            exported = export_run(store, result.final_key, formats, dest, gguf_type=args.gguf_type)
        except (ExportError, StoreError, OSError) as exc:
            print(f"error: export failed: {exc}", file=sys.stderr)
            return 1
        for fmt in formats:
            print(f"export {fmt}: {exported.local[fmt]} -> {exported.keys[fmt]}", flush=True)
        summary["exports"] = {fmt: {"path": str(exported.local[fmt]), "key": exported.keys[fmt]} for fmt in formats}
    print(f"final model: {result.final_key}", flush=True)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
