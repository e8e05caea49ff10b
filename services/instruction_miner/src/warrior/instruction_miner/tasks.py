"""The miner's stages: mine instructions from experts, screen mined instructions (one unit, or a batch)."""

from __future__ import annotations

import logging
from typing import Any

from warrior.common.batches import run_each
from warrior.common.benchmarks import BenchmarkDataError
from warrior.common.campaign_config import CampaignConfig
from warrior.common.campaign_state import CampaignState
from warrior.common.chat_template import COMPLETION_STOPS, completion_prequery_prefix, prequery_prefix
from warrior.common.embeddings import DEFAULT_MODEL, EmbeddingError, embedder
from warrior.common.expert_client import ExpertRequestError, ExpertUnavailable
from warrior.common.ids import content_hash
from warrior.common.ledger import RevisionMismatch
from warrior.common.model_info import expert_model
from warrior.common.records import instruction_key, screening_key
from warrior.common.registry import joins_open_roster
from warrior.common.runtime import Runtime
from warrior.common.store import ObjectNotFound
from warrior.instruction_miner.benchmark_index import candidate_finder, contamination_index, embedding_index
from warrior.instruction_miner.categories import categorize
from warrior.instruction_miner.dedup_index import SharedDedupIndex
from warrior.instruction_miner.filters import FilterLimits, clean_instruction, drop_reason
from warrior.instruction_miner.prompts import completion_system_prompt, mining_system_prompt
from warrior.instruction_miner.rating import rate
from warrior.instruction_miner.rewording import ScoreFn
from warrior.instruction_miner.rewording import judge as judge_rewording
from warrior.instruction_miner.rewording import verdict as rewording_verdict
from warrior.instruction_miner.topic import classifier as topic_classifier

log = logging.getLogger(__name__)


def instruction_id(campaign: str, attacker: str, index: int) -> str:
    return content_hash(campaign, attacker, index, length=16)


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
    language = config.language(index)
    try:
        model = expert_model(rt.client, attacker)
        if model.chat_template:
            prefix = prequery_prefix(
                model.chat_template,
                config.mining.system_prompt or mining_system_prompt(language),
                bos_token=model.bos_token,
                eos_token=model.eos_token,
            )
            stops = list(model.stop_strings)
            style = "chat_template"
        else:
            system = config.mining.system_prompt or completion_system_prompt(language)
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
        ledger = rt.ledger(campaign)
        response, reused = ledger.call(
            attacker,
            model.revision,
            "complete",
            request,
            lambda: rt.client.complete(attacker, prefix, sampling, revision=model.revision).to_dict(),
        )
        state.incr("ledger_reused" if reused else "engine_calls")
    except (ExpertUnavailable, ExpertRequestError, RevisionMismatch) as exc:
        state.fail(f"mine:{unit}", str(exc))
        state.mark("mine_done", unit)
        return None
    record = {
        "id": iid,
        "campaign": campaign,
        "attacker": attacker,
        "attacker_revision": model.revision,
        "index": index,
        "language": language,
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


def _contamination(rt: Runtime, state: CampaignState, iid: str, text: str, *, embedding: bool) -> str | None:
    """Drop reason from a benchmark check, if any: 13-gram overlap, or (`embedding`) embedding similarity."""
    settings = state.campaign_config().screening.decontamination
    if embedding and not settings.embedding.enabled:
        return None
    try:
        if embedding:
            hit = embedding_index(settings, rt.settings.cache_dir).match(text)
        else:
            hit = contamination_index(settings, rt.settings.cache_dir).match(text)
    except (BenchmarkDataError, EmbeddingError) as exc:
        state.fail(f"decontamination:{iid}", str(exc))
        return "decontamination_unavailable"
    if hit is None:
        return None
    state.put("contamination", iid, hit.record())
    return "contaminated"


def rewording_judge(rt: Runtime, config: CampaignConfig) -> str | None:
    """The expert that judges a campaign's rewordings: the configured one, else the first configured live
    expert that serves candidate log-probabilities (None: no live expert does)."""
    named = config.screening.decontamination.rewording.expert
    live = rt.registry.experts()
    for name in [named] if named else config.expert_names:
        if live.get(name) and expert_model(rt.client, name).candidate_logprobs:
            return name
    return None


def ledger_scorer(rt: Runtime, state: CampaignState, expert: str) -> ScoreFn:
    """The rewording judge's scoring function: the expert's candidate log-probabilities, each call paid
    once per campaign through its call ledger."""
    ledger = rt.ledger(state.campaign)

    def score(messages: list[dict[str, str]], texts: list[str]) -> dict[str, float]:
        request = {"messages": messages, "assistant_prefix": "", "candidates": texts}
        revision = expert_model(rt.client, expert).revision
        invoke = lambda: rt.client.score_candidates(expert, messages, "", texts).to_dict()  # noqa: E731
        response, reused = ledger.call(expert, revision, "score_candidates", request, invoke)
        state.incr("ledger_reused" if reused else "engine_calls")
        return {c: float(lp) for c, lp in response["logprobs"].items()}

    return score


def _rewording(rt: Runtime, state: CampaignState, iid: str, text: str) -> str | None:
    """Drop reason when the request rewords a benchmark problem (see rewording.py); the judgment is
    recorded either way. Fails closed: with no judge, the request is dropped, not kept unchecked."""
    settings = state.campaign_config().screening.decontamination
    rewording = settings.rewording
    if not rewording.enabled:
        return None
    try:
        finder = candidate_finder(settings, rt.settings.cache_dir)
        candidates = finder.find(text, top=rewording.candidates, min_similarity=rewording.min_similarity)
    except (BenchmarkDataError, EmbeddingError) as exc:
        state.fail(f"decontamination:{iid}", str(exc))
        return "decontamination_unavailable"
    if not candidates:
        return None
    expert = rewording_judge(rt, state.campaign_config())
    if expert is None:
        state.fail(f"rewording:{iid}", "no live expert serves candidate log-probabilities to judge rewordings")
        return "decontamination_unavailable"
    try:
        judged = judge_rewording(text, candidates, ledger_scorer(rt, state, expert), code_weight=rewording.code_weight)
    except (ExpertUnavailable, ExpertRequestError, RevisionMismatch) as exc:
        state.fail(f"rewording:{iid}", f"{type(exc).__name__}: {exc}")
        return "decontamination_unavailable"
    hit = rewording_verdict(judged, rewording.threshold)
    best = max(judged, key=lambda j: j.evidence)
    state.put("rewording", iid, {"judge": expert, "threshold": rewording.threshold,
                                 "nearest": f"{best.candidate.item.benchmark}/{best.candidate.item.task_id}",
                                 "evidence": round(best.evidence, 4), "statement": round(best.statement, 4),
                                 "code": None if best.code is None else round(best.code, 4)})  # fmt: skip
    if hit is None:
        return None
    state.put("contamination", iid, hit.record())
    return "contaminated"


def _on_topic(state: CampaignState, iid: str, text: str) -> tuple[str | None, dict[str, float] | None]:
    """Drop reason when the request is not about programming, and its topic score (recorded either way)."""
    settings = state.campaign_config().screening.on_topic
    try:
        scored = topic_classifier().score(text)
    except EmbeddingError as exc:
        state.fail(f"topic:{iid}", str(exc))
        return "topic_unavailable", None
    record = scored.record() | {"min_score": settings.min_score}
    state.put("topic", iid, record)
    return ("off_topic" if scored.score < settings.min_score else None), record


def _raters(rt: Runtime, state: CampaignState, attacker: str) -> list[str]:
    """Every live expert of the campaign but the instruction's author: its configured experts, and those
    that joined its open roster and still match its roster selector (never one labelled role=eval)."""
    config = state.campaign_config()
    live = rt.registry.experts()
    selector = config.matchmaking.roster_selector
    joined = {name for name in state.members("roster") if joins_open_roster(live.get(name, []), selector)}
    roster = set(config.expert_names) | joined
    return sorted(name for name in roster if name != attacker and live.get(name))


def _quality(rt: Runtime, state: CampaignState, record: dict[str, Any]) -> dict[str, Any]:
    """The raters' scores of the instruction (recorded once: a redelivery reuses the ledger's calls)."""
    campaign, iid = state.campaign, record["id"]
    config = state.campaign_config()
    ledger = rt.ledger(campaign)

    def call(expert: str, kind: str, request: dict[str, Any], invoke: Any) -> dict[str, Any]:
        response, reused = ledger.call(expert, expert_model(rt.client, expert).revision, kind, request, invoke)
        state.incr("ledger_reused" if reused else "engine_calls")
        return response

    return rate(
        rt,
        call,
        record["text"],
        record.get("language") or config.languages[0],
        _raters(rt, state, record.get("attacker", "")),
        config.screening.rating,
        lambda rater, reason: state.fail(f"rate:{iid}:{rater}", reason),
    )


def mine_batch(rt: Runtime, campaign: str, batch: list[tuple[str, int]]) -> list[str]:
    """Mine every (attacker, index) unit of a batch at once; the ids of the instructions mined."""
    mined = run_each(lambda unit: mine(rt, campaign, unit[0], int(unit[1])), batch, concurrency=len(batch))
    return [iid for iid in mined if iid is not None]


def screen_batch(rt: Runtime, campaign: str, iids: list[str]) -> list[str]:
    """Screen a batch of mined instructions at once; the ids of those kept, in batch order.

    The cheap checks run first for the whole batch; the texts that pass them are embedded in one call
    (the embedder keeps them for the decontamination and on-topic checks), then each goes through the
    costly checks, as `screen` does one instruction."""
    state = CampaignState(rt.redis, campaign)
    records: list[dict[str, Any] | None] = run_each(lambda iid: _load(rt, campaign, iid), iids, concurrency=len(iids))
    units = list(zip(iids, records, strict=True))
    reasons = run_each(
        lambda unit: _cheap_checks(rt, state, unit[0], unit[1]), units, concurrency=len(iids),
        instruction=lambda unit: unit[0],
    )  # fmt: skip
    texts = [r["text"] for r, reason in zip(records, reasons, strict=True) if r is not None and reason is None]
    config = state.campaign_config()
    decontamination = config.screening.decontamination.embedding
    models = {decontamination.model} if decontamination.enabled else set()
    if config.screening.on_topic.enabled:
        models.add(DEFAULT_MODEL)  # the on-topic classifier's model
    try:
        for model in sorted(models) if texts else []:
            embedder(model).encode(texts)
    except EmbeddingError:
        pass  # each instruction's own check records the failure with its id
    kept = run_each(
        lambda unit: _costly_checks(rt, state, unit[0][0], unit[0][1], unit[1]),
        list(zip(units, reasons, strict=True)), concurrency=len(iids), instruction=lambda unit: unit[0][0],
    )  # fmt: skip
    return [iid for iid, ok in zip(iids, kept, strict=True) if ok]


def _load(rt: Runtime, campaign: str, iid: str) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = rt.store.get_json(instruction_key(campaign, iid))
    except ObjectNotFound:
        return None
    return record


def screen(rt: Runtime, campaign: str, iid: str, *, record: dict[str, Any] | None = None) -> bool:
    """Keep or drop one mined instruction; True when it is kept.

    In order, the cheap checks first: shape filters, truncation, 13-gram decontamination and
    campaign-wide near-duplicate removal; then those that embed the text or ask the experts:
    embedding decontamination, the on-topic check (is it about programming at all?) and
    difficulty/quality rating by every other live expert. Each drop is recorded with its reason; a
    kept instruction is tagged with its task category and carries its topic score.
    """
    state = CampaignState(rt.redis, campaign)
    record = record if record is not None else _load(rt, campaign, iid)
    reason = _cheap_checks(rt, state, iid, record)
    return _costly_checks(rt, state, iid, record, reason)


def _cheap_checks(rt: Runtime, state: CampaignState, iid: str, record: dict[str, Any] | None) -> str | None:
    """The drop reason from the checks that cost no model: shape, truncation, 13-grams, near-duplicates.

    Near-duplicates come before the embedding checks so that a repeat costs no embedding: at scale
    most mined requests repeat earlier ones. A repeat of a contaminated or off-topic request is then
    dropped as a near-duplicate; dropped either way."""
    if record is None:
        return "missing_record"
    config = state.campaign_config()
    limits = FilterLimits(min_words=config.screening.min_words, max_chars=config.screening.max_chars)
    reason = drop_reason(record["text"], limits)
    if reason is None and record.get("finish_reason") == "length":
        reason = "truncated"  # the request ran past the mining token budget: its end is missing
    if reason is None:
        reason = _contamination(rt, state, iid, record["text"], embedding=False)
    if reason is None:
        index = SharedDedupIndex(
            rt.redis, state.campaign, threshold=config.screening.dedup_threshold, num_perm=config.screening.num_perm
        )
        duplicate_of = index.check_and_insert(iid, record["text"])
        if duplicate_of is not None:
            reason = "near_duplicate"
            state.put("duplicates", iid, duplicate_of)
    return reason


def _costly_checks(
    rt: Runtime, state: CampaignState, iid: str, record: dict[str, Any] | None, reason: str | None
) -> bool:
    """Embedding decontamination, the on-topic check and rating for a request the cheap checks kept
    (`reason` None); then its drop or its keep is recorded. True when it is kept."""
    if record is None or reason is not None:
        abandon_screen(rt, state.campaign, iid, reason or "missing_record")
        return False
    config = state.campaign_config()
    reason = _contamination(rt, state, iid, record["text"], embedding=True)
    topic: dict[str, float] | None = None
    if reason is None and config.screening.on_topic.enabled:
        reason, topic = _on_topic(state, iid, record["text"])
    if reason is None:
        reason = _rewording(rt, state, iid, record["text"])
    quality: dict[str, Any] | None = None
    if reason is None and config.screening.rating.enabled:
        quality = _quality(rt, state, record)
        state.put("quality", iid, quality)
        if quality["mean"] is None:
            reason = "unrated"  # no other expert could rate it; the failures say why
        elif quality["mean"] < config.screening.rating.min_score:
            reason = "low_quality"
    if reason is not None:
        abandon_screen(rt, state.campaign, iid, reason)
        return False
    category = categorize(record["text"])
    screening = {"id": iid, "category": category, "language": record.get("language") or config.languages[0],
                 "quality": quality, "topic": topic}  # fmt: skip
    rt.store.put_json(screening_key(state.campaign, iid), screening, if_absent=True)
    state.put("categories", iid, category)
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
