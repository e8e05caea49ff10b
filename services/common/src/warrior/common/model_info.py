"""Model info of an expert's live replica, cached per process by (expert, revision)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from warrior.common.expert_client import ExpertClient


@dataclass(frozen=True)
class ExpertModel:
    name: str
    revision: str
    chat_template: str
    bos_token: str
    eos_token: str
    stop_strings: tuple[str, ...]
    context_length: int
    candidate_logprobs: bool


_cache: dict[tuple[str, str], ExpertModel] = {}
_lock = threading.Lock()


def expert_model(client: ExpertClient, expert: str) -> ExpertModel:
    """What the expert serves now (one live replica's revision; during a rolling update, either);
    fetched once per revision, from a replica serving that revision (a redeployed model is seen afresh).

    Calls keyed on `revision` in the ledger go to replicas serving it, so what is recorded under a
    revision was answered by those weights."""
    revision = client.replica(expert).revision
    with _lock:
        cached = _cache.get((expert, revision))
    if cached is not None:
        return cached
    info = client.model_info(expert, revision=revision)
    model = ExpertModel(
        name=expert,
        revision=info.revision,
        chat_template=info.chat_template,
        bos_token=info.bos_token,
        eos_token=info.eos_token,
        stop_strings=tuple(info.stop_strings),
        context_length=info.context_length,
        candidate_logprobs=info.capabilities.candidate_logprobs,
    )
    with _lock:
        _cache[(expert, model.revision)] = model
    return model
