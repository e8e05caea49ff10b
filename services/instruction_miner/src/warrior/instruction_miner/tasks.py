"""The miner's stages: mine one instruction from one expert, screen one instruction."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from warrior.common import benchmarks as benchmark_data
from warrior.common.benchmarks import BenchmarkDataError
from warrior.common.campaign_config import DecontaminationConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.chat_template import COMPLETION_STOPS, completion_prequery_prefix, prequery_prefix
from warrior.common.expert_client import ExpertRequestError, ExpertUnavailable
from warrior.common.ids import content_hash
from warrior.common.ledger import CallLedger
from warrior.common.model_info import expert_model
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound
from warrior.instruction_miner.decontamination import BenchmarkItem, ContaminationIndex
from warrior.instruction_miner.dedup_index import SharedDedupIndex
from warrior.instruction_miner.filters import FilterLimits, clean_instruction, drop_reason
from warrior.instruction_miner.prompts import completion_system_prompt, mining_system_prompt

log = logging.getLogger(__name__)


def instruction_id(campaign: str, attacker: str, index: int) -> str:
    return content_hash(campaign, attacker, index, length=16)


def instruction_key(campaign: str, iid: str) -> str:
    return f"runs/{campaign}/instructions/{iid}.json"


@functools.lru_cache(maxsize=4)
def _index(benchmarks: tuple[str, ...], ngram: int, mbpp_path: str | None, home: Path) -> ContaminationIndex:
    problems = []
    if "humaneval" in benchmarks:
        problems += benchmark_data.humaneval()
    if "mbpp" in benchmarks:
        problems += benchmark_data.mbpp(mbpp_path, home / "benchmarks")
    return ContaminationIndex((BenchmarkItem(p.benchmark, p.task_id, p.text) for p in problems), n=ngram)


def contamination_index(config: DecontaminationConfig, home: Path) -> ContaminationIndex:
    """The campaign's benchmark index, built once per process."""
    return _index(tuple(sorted(config.benchmarks)), config.ngram, config.mbpp_path, home)


def mine(rt: Runtime, campaign: str, attacker: str, index: int) -> str | None:
    """Ask one expert for one instruction with its pre-query prefix; returns the new instruction's id.

    A dead or refusing expert is recorded as a failure of this unit of work, not raised: the
    campaign goes on with the others.
    """
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    unit = f"{attacker}:{index}"
    iid = instruction_id(campaign, attacker, index)
    if rt.store.exists(instruction_key(campaign, iid)):  # an earlier delivery finished the work
        state.mark("mined", iid)
        state.mark("mine_done", unit)
        return iid
    try:
        model = expert_model(rt.client, attacker)
        if model.chat_template:
            prefix = prequery_prefix(
                model.chat_template,
                config.mining.system_prompt or mining_system_prompt(config.language),
                bos_token=model.bos_token,
                eos_token=model.eos_token,
            )
            stops = list(model.stop_strings)
            style = "chat_template"
        else:
            system = config.mining.system_prompt or completion_system_prompt(config.language)
            prefix = completion_prequery_prefix(system)
            stops = list(COMPLETION_STOPS)
            style = "completion"
        sampling = (
            config.mining.sampling.model_dump()
            | config.mining.cell(index)
            | {
                "stop": stops,
                "seed": int(content_hash(config.mining.seed, campaign, attacker, index, length=8), 16) or 1,
            }
        )
        request = {"prompt": prefix, "sampling": sampling}
        ledger = CallLedger(rt.store, campaign)
        response, reused = ledger.call(
            attacker,
            model.revision,
            "complete",
            request,
            lambda: rt.client.complete(attacker, prefix, sampling).to_dict(),
        )
        state.incr("ledger_reused" if reused else "engine_calls")
    except (ExpertUnavailable, ExpertRequestError) as exc:
        state.fail(f"mine:{unit}", str(exc))
        state.mark("mine_done", unit)
        return None
    record = {
        "id": iid,
        "campaign": campaign,
        "attacker": attacker,
        "attacker_revision": model.revision,
        "index": index,
        "prefix_style": style,
        "raw": response["text"],
        "text": clean_instruction(response["text"]),
        "finish_reason": response["finish_reason"],
        "sampling": sampling,
    }
    rt.store.put_json(instruction_key(campaign, iid), record, if_absent=True)
    state.mark("mined", iid)
    state.mark("mine_done", unit)
    return iid


def screen(rt: Runtime, campaign: str, iid: str) -> bool:
    """Shape filters, then campaign-wide near-duplicate removal; True when the instruction is kept."""
    state = CampaignState(rt.redis, campaign)
    config = state.campaign_config()
    try:
        record = rt.store.get_json(instruction_key(campaign, iid))
    except ObjectNotFound:
        state.drop(iid, "missing_record")
        state.mark("screened", iid)
        return False
    limits = FilterLimits(min_words=config.screening.min_words, max_chars=config.screening.max_chars)
    reason = drop_reason(record["text"], limits)
    if reason is None and record.get("finish_reason") == "length":
        reason = "truncated"  # the request ran past the mining token budget: its end is missing
    if reason is None:
        try:
            hit = contamination_index(config.screening.decontamination, rt.settings.home).match(record["text"])
        except BenchmarkDataError as exc:
            state.fail(f"decontamination:{iid}", str(exc))
            hit, reason = None, "decontamination_unavailable"
        if hit is not None:
            reason = "contaminated"
            state.put("contamination", iid, {"benchmark": hit.benchmark, "task_id": hit.task_id, "ngram": hit.ngram})
    if reason is None:
        index = SharedDedupIndex(
            rt.redis, campaign, threshold=config.screening.dedup_threshold, num_perm=config.screening.num_perm
        )
        duplicate_of = index.check_and_insert(iid, record["text"])
        if duplicate_of is not None:
            reason = "near_duplicate"
            state.put("duplicates", iid, duplicate_of)
    if reason is not None:
        state.drop(iid, reason)
        state.mark("screened", iid)
        return False
    state.mark("kept", iid)
    state.mark("screened", iid)
    return True


def abandon_mine(rt: Runtime, campaign: str, attacker: str, index: int, reason: str) -> None:
    """Close a mining unit that will not be done, so the campaign can still finish."""
    state = CampaignState(rt.redis, campaign)
    unit = f"{attacker}:{index}"
    state.fail(f"mine:{unit}", reason)
    state.mark("mine_done", unit)


def abandon_screen(rt: Runtime, campaign: str, iid: str, reason: str) -> None:
    state = CampaignState(rt.redis, campaign)
    state.drop(iid, reason)
    state.mark("screened", iid)
