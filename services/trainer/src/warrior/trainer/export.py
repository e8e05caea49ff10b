"""Export a trained model for serving: a Hugging Face folder (vLLM) and a GGUF file (llama.cpp).

The run's ``final/`` folder in the store already is a self-contained HF model: merged full weights
in safetensors, tokenizer, chat template, generation config. :func:`export_hf` downloads it
(every file checked against its sha256) and checks that a server has what it needs.

:func:`export_gguf` converts such a folder with llama.cpp's own converter,
``convert_hf_to_gguf.py``, run in a child process with the ``gguf-py`` of the same llama.cpp tree.
``scripts/fetch_gguf_converter.py`` (run by ``make install``) puts it in ``.cache/gguf-converter/``;
set WARRIOR_GGUF_CONVERTER to use a copy elsewhere (the trainer image has one in /opt).

:func:`export_run` does both for a finished run and commits the results to the store::

    exports/<model>/<run>/hf/<files> + _COMPLETE
    exports/<model>/<run>/gguf/<model>-<type>.gguf + _COMPLETE
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from warrior.common.store import ObjectStore, validate_key
from warrior.trainer.checkpoints import download_folder, upload_files, upload_folder

__all__ = [
    "CONVERTER_ENV",
    "FORMATS",
    "GGUF_TYPES",
    "ExportError",
    "ExportResult",
    "check_hf_folder",
    "export_gguf",
    "export_hf",
    "export_run",
    "find_converter",
    "parse_formats",
]

CONVERTER_ENV = "WARRIOR_GGUF_CONVERTER"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
FORMATS = ("hf", "gguf")
# What llama.cpp's converter writes without a separate quantisation step.
GGUF_TYPES = ("f16", "bf16", "f32", "q8_0")
GgufType = Literal["f16", "bf16", "f32", "q8_0"]
# Lines of the converter's output kept in an error message.
_TAIL_LINES = 30


class ExportError(RuntimeError):
    """An export that could not be made; the message says what is missing or how conversion failed."""


@dataclass
class ExportResult:
    """Where each format went: local paths and store prefixes (``exports/<model>/<run>/<format>/``)."""

    local: dict[str, Path] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def parse_formats(text: str) -> list[str]:
    """``"gguf,hf"`` -> ``["gguf", "hf"]``; unknown names raise ValueError."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    return list(dict.fromkeys(formats))


def _repo_candidates() -> Iterable[Path]:
    yield Path.cwd() / ".cache" / "gguf-converter"
    # A source checkout: the folder above services/ holds .cache/.
    for parent in Path(__file__).resolve().parents:
        if (parent / "services").is_dir() and (parent / "scripts").is_dir():
            yield parent / ".cache" / "gguf-converter"
            break


def find_converter() -> Path:
    """The folder holding ``convert_hf_to_gguf.py`` (WARRIOR_GGUF_CONVERTER, else ``.cache/gguf-converter``)."""
    configured = os.environ.get(CONVERTER_ENV)
    candidates = [Path(configured)] if configured else list(_repo_candidates())
    for folder in candidates:
        if (folder / CONVERTER_SCRIPT).is_file() and (folder / "gguf-py" / "gguf").is_dir():
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise ExportError(
        f"llama.cpp's GGUF converter is not installed (looked in {where}); run "
        f"`python scripts/fetch_gguf_converter.py` (part of `make install`) or set {CONVERTER_ENV}"
    )


def check_hf_folder(folder: Path) -> None:
    """Raise ExportError unless ``folder`` has what vLLM and the converter need."""
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer.model").is_file():
        missing.append("tokenizer.json")
    if not (folder / "chat_template.jinja").is_file() and '"chat_template"' not in _read(
        folder / "tokenizer_config.json"
    ):
        missing.append("chat_template.jinja")
    if missing:
        raise ExportError(f"{folder} is not a servable HF model folder; missing: {', '.join(missing)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def export_hf(store: ObjectStore, final_key: str, dest: Path) -> Path:
    """Download a run's final model (``checkpoints/<model>/<run>/final/``) into ``dest`` and check it.

    ``dest`` is replaced as a whole, so no file of an earlier export lingers beside the new one.
    """
    if dest.exists():
        shutil.rmtree(dest)
    download_folder(store, final_key, dest)
    check_hf_folder(dest)
    return dest


def export_gguf(
    hf_folder: Path,
    out_file: Path,
    *,
    outtype: GgufType = "f16",
    converter: Path | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Convert an HF model folder into one GGUF file with llama.cpp's converter; returns ``out_file``.

    outtype: f16 (the default: half of f32's size, run by every llama.cpp backend), bf16, f32, or
    q8_0 (8-bit, half again).

    The converter knows each architecture and tokenizer family llama.cpp supports; anything else
    fails with its own message in the ExportError. One such case: a SentencePiece model (Gemma)
    whose folder lacks ``tokenizer.model``, as folders rebuilt from a GGUF file do.
    """
    if outtype not in GGUF_TYPES:
        raise ExportError(f"GGUF type {outtype!r} is not one of {', '.join(GGUF_TYPES)}")
    check_hf_folder(hf_folder)
    folder = converter or find_converter()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + ".partial")
    env = dict(os.environ)
    # The converter must import the gguf-py next to it: the PyPI release lacks what it needs.
    env.pop("NO_LOCAL_GGUF", None)
    command = [
        sys.executable,
        str(folder / CONVERTER_SCRIPT),
        str(hf_folder),
        "--outfile",
        str(partial),
        "--outtype",
        outtype,
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise ExportError(f"GGUF conversion of {hf_folder} took longer than {timeout_s}s") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-_TAIL_LINES:])
        raise ExportError(f"GGUF conversion of {hf_folder} failed (exit {done.returncode}):\n{tail}")
    with partial.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ExportError(f"the converter wrote {partial}, which is not a GGUF file")
    partial.replace(out_file)
    return out_file


def _names(final_key: str) -> tuple[str, str]:
    parts = final_key.rstrip("/").split("/")
    if len(parts) != 4 or parts[0] != "checkpoints" or parts[3] != "final":
        raise ExportError(f"{final_key!r} is not a final model key (checkpoints/<model>/<run>/final/)")
    return parts[1], parts[2]


def export_run(
    store: ObjectStore,
    final_key: str,
    formats: Iterable[str],
    dest: Path,
    *,
    gguf_type: GgufType = "f16",
    upload: bool = True,
) -> ExportResult:
    """Export a finished run's final model in ``formats`` ("hf", "gguf") under ``dest``; upload each to the store.

    ``dest/hf/`` receives the HF folder and ``dest/<model>-<type>.gguf`` the GGUF file.
    """
    wanted = list(formats)
    model, run = _names(final_key)
    result = ExportResult()
    base = validate_key(f"exports/{model}/{run}") + "/"
    with tempfile.TemporaryDirectory(prefix="warrior-export-") as scratch:
        # The GGUF is made from the HF folder: download it once, into dest only when asked for.
        hf_folder = dest / "hf" if "hf" in wanted else Path(scratch) / "hf"
        export_hf(store, final_key, hf_folder)
        if "hf" in wanted:
            result.local["hf"] = hf_folder
            if upload:
                upload_folder(store, base + "hf/", hf_folder, {"model": model, "run": run, "format": "hf"})
                result.keys["hf"] = base + "hf/"
        if "gguf" in wanted:
            gguf = export_gguf(hf_folder, dest / f"{model}-{gguf_type}.gguf", outtype=gguf_type)
            result.local["gguf"] = gguf
            if upload:
                meta = {"model": model, "run": run, "format": "gguf", "type": gguf_type, "file": gguf.name}
                upload_files(store, base + "gguf/", [(gguf.name, gguf)], meta)
                result.keys["gguf"] = base + "gguf/"
    return result
