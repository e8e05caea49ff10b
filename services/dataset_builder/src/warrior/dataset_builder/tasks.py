"""The dataset builder's stages: collect one scored battle as a row, build a dataset version."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import Any, Literal

from warrior.common.battles import load_battles
from warrior.common.campaign_state import CampaignState
from warrior.common.records import instruction_key, load_screening
from warrior.common.runtime import Runtime
from warrior.dataset_builder.rows import TAGS, candidate_row, training_row, with_battle
from warrior.dataset_builder.selection import SelectionConfig, select_rows
from warrior.dataset_builder.versions import build_version


def row_key(campaign: str, iid: str) -> str:
    return f"runs/{campaign}/rows/{iid}.json"


def collect(rt: Runtime, campaign: str, iid: str) -> None:
    """Append this instruction's row (with lineage and its provisional winner) to the campaign's rows.

    The category and language that screening gave the instruction travel with the row.
    """
    base = f"runs/{campaign}"
    instruction = rt.store.get_json(instruction_key(campaign, iid))
    screening = load_screening(rt.store, campaign, iid)
    instruction |= {tag: screening[tag] for tag in TAGS if screening.get(tag) is not None}
    battle = rt.store.get_json(f"{base}/battles/{iid}.json")
    score = rt.store.get_json(f"{base}/scores/{iid}.json")
    rt.store.put_json(row_key(campaign, iid), candidate_row(instruction, battle, score), if_absent=True)
    state = CampaignState(rt.redis, campaign)
    state.mark("collected", iid)
    state.mark("finished", iid)


def selection_config(rt: Runtime, campaign: str) -> SelectionConfig:
    """The selection settings of the campaign's `dataset` section (defaults for an unknown campaign)."""
    try:
        dataset = CampaignState(rt.redis, campaign).campaign_config().dataset
    except KeyError:
        return SelectionConfig()
    return SelectionConfig.from_dataset_config(dataset)


def screening_drops(rt: Runtime, campaign: str) -> dict[str, int] | None:
    """Instructions the campaign dropped before battles, reason -> count (None for an unknown campaign)."""
    try:
        return dict(CampaignState(rt.redis, campaign).snapshot()["instructions"]["dropped"])
    except KeyError:
        return None


Progress = Callable[[int, int, str], None]


def random_winner(candidate: dict[str, Any], seed: int) -> str:
    """The random-winner ablation's pick: one of the answers, uniformly, the same for the same seed and row."""
    names = sorted(str(name) for name in candidate["answers"])
    return names[random.Random(f"{seed}:{candidate['id']}").randrange(len(names))]


def build(
    rt: Runtime,
    campaign: str,
    name: str,
    ratings_key: str,
    progress: Progress | None = None,
    *,
    winners: Literal["ratings", "random"] = "ratings",
    instructions: Collection[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A dataset version of the campaign's rows, each with the winner decided by the final ratings.

    The rows then go through the selection the campaign's `dataset` section configures (duplicates
    out, then KCenterGreedy down to `target_rows`); the manifest records it and the screening drops.
    `progress(done, total, step)` follows the rows read, then the steps after.

    For ablations on the same rows: `instructions` takes exactly these instructions' rows and skips the
    selection (they came out of one already); `winners="random"` makes a random answer each row's
    target (`random_winner`, drawn with `seed`) instead of the ratings' winner.
    """
    if winners not in ("ratings", "random"):
        raise ValueError(f"winners must be 'ratings' or 'random', got {winners!r}")
    report = progress or (lambda done, total, step: None)
    snapshot = rt.store.get_json(ratings_key)
    battles = load_battles(rt.store, campaign)  # newcomers' addenda included
    rows = []
    keys = rt.store.list(f"runs/{campaign}/rows/")
    wanted = None if instructions is None else set(instructions)
    if wanted is not None:
        known = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in keys}
        missing = sorted(wanted - known)
        if missing:
            raise ValueError(f"campaign {campaign} has no row for {len(missing)} instruction(s), e.g. {missing[0]}")
        keys = [key for key in keys if key.rsplit("/", 1)[-1].removesuffix(".json") in wanted]
    for done, key in enumerate(keys):
        report(done, len(keys), "reading rows")
        candidate = rt.store.get_json(key)
        decided = snapshot["winners"].get(candidate["id"])
        if decided is None:
            continue
        candidate = with_battle(candidate, battles[candidate["id"]])
        winner = decided["winner"] if winners == "ratings" else random_winner(candidate, seed)
        rows.append(training_row(candidate, winner, decided["scores"], ratings_key))
    report(len(keys), len(keys), "selecting rows")
    config = selection_config(rt, campaign) if wanted is None else SelectionConfig()
    selection = select_rows(rows, config)
    report(len(keys), len(keys), f"writing {len(selection.rows)} rows")
    return build_version(
        rt.store,
        name,
        selection.rows,
        campaigns=[campaign],
        ratings_key=ratings_key,
        leaderboard=snapshot["leaderboard"],
        selection=selection,
        screening=screening_drops(rt, campaign),
    )
