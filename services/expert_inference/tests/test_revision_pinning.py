"""During a rolling update, the ledger pins the revision of the replica that actually answered.

Two replicas of one expert serve different weights (two zero-latency engines with their revisions
set apart, on real gRPC servers registered in a real Redis). Each engine marks its answers with its
revision, so every ledger record can be checked against the replica that answered it: over many
calls of every kind, through the ledger directly and through a battle, the revision a record is keyed
on and records always names the weights that produced the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import grpc
import pytest

from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.ledger import CallLedger, RevisionMismatch
from warrior.common.model_info import expert_model
from warrior.common.redis_client import connect
from warrior.common.registry import ExpertRecord, Registry
from warrior.common.runtime import get_runtime
from warrior.common.store import LocalStore
from warrior.expert_inference.engine import Generated, SamplingSpec
from warrior.expert_inference.server import ExpertInferenceServicer
from warrior.expert_inference.zero_latency_engine import ZeroLatencyTestEngine
from warrior.judge.battle import BattleContext, answer, judge_pair
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

REVISIONS = ("rev-old", "rev-new")
SCORE_MARK = {"rev-old": -1.0, "rev-new": -2.0}  # every candidate's log-probability, by revision


class MarkedEngine(ZeroLatencyTestEngine):
    """A zero-latency engine serving `revision`, whose every answer says which revision gave it."""

    def __init__(self, revision: str) -> None:
        super().__init__("coder", capacity=4)
        self.info = replace(self.info, revision=revision)

    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        out = await super().generate(prompt, sampling)
        return replace(out, text=f"<{self.info.revision}> {out.text}")

    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        return [(SCORE_MARK[self.info.revision], 1) for _ in candidates]


class Replica:
    """A real gRPC expert server on its own event loop thread."""

    def __init__(self, revision: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server()
            pb_grpc.add_ExpertInferenceServiceServicer_to_server(
                ExpertInferenceServicer("coder", MarkedEngine(revision)), server
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        self.record = ExpertRecord(
            name="coder",
            instance=revision,
            endpoint=f"127.0.0.1:{self.port}",
            model="zero-latency-test/coder",
            revision=revision,
            engine="zero-latency-test",
            capacity=4,
            capabilities={"raw_completion": True, "chat": True, "candidate_logprobs": True, "chat_template": True},
        )

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture()
def rolling_update(warrior_env: dict[str, str]) -> Iterator[list[Replica]]:
    """Two replicas of `coder`, one per revision, both registered and serving."""
    for key in [k for k in warrior_env if k.startswith(("WARRIOR_GRPC_TLS", "WARRIOR_GRPC_TOKEN"))]:
        pytest.skip(f"{key} is set: these servers speak plain text")
    replicas = [Replica(revision) for revision in REVISIONS]
    registry = Registry(connect(warrior_env["REDIS_URL"]), ttl_s=600)
    for replica in replicas:
        registry.register(replica.record)
    try:
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def _answered_by(response: dict[str, Any]) -> str:
    """The revision whose engine produced a recorded response (from its mark)."""
    if "logprobs" in response:
        [mark] = set(response["logprobs"].values())
        return next(rev for rev, value in SCORE_MARK.items() if value == mark)
    return str(response["text"]).split(">", 1)[0].removeprefix("<")


def _ask(method: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """A model call through the expert client (pinned by the ledger call around it), as a dict."""
    return dict(method(*args).to_dict())


def test_every_record_names_the_revision_that_answered(rolling_update: list[Replica]) -> None:
    rt = get_runtime()
    ledger = CallLedger(rt.store, "rolling")
    messages = [{"role": "user", "content": "Sort a list."}]
    for i in range(24):
        model = expert_model(rt.client, "coder")  # either revision: a random live replica's
        sampling: dict[str, Any] = {"temperature": 0.0, "max_tokens": 16, "seed": i + 1}
        client = rt.client
        ledger.call("coder", model.revision, "chat", {"i": i}, partial(_ask, client.chat, "coder", messages, sampling))
        ledger.call(
            "coder", model.revision, "complete", {"i": i}, partial(_ask, client.complete, "coder", "f", sampling)
        )
        score = partial(_ask, client.score_candidates, "coder", messages, "[[", ["A", "B"])
        ledger.call("coder", model.revision, "score_candidates", {"i": i}, score)
    # Through a battle: the competitor's answer and the judge's verdict calls name their revision too.
    config = parse_campaign_config(
        {"experts": [{"name": "coder", "engine": "zero-latency-test"}, {"name": "x", "engine": "zero-latency-test"}]}
    )
    state = CampaignState(rt.redis, "rolling")
    answers = {"a": {"text": "one"}, "b": {"text": "two"}}
    for i in range(12):
        ctx = BattleContext(rt, "rolling", f"i{i}", f"Write function {i}.", config.battle, state, ledger)
        mine = answer(ctx, "coder")
        assert _answered_by(mine) == mine["revision"]
        judgment = judge_pair(ctx, "coder", "a", "b", answers)
        assert judgment["mode"] == "logprobs"
    records = [rt.store.get_json(key) for key in rt.store.list("runs/rolling/calls/")]
    assert len(records) == 24 * 3 + 12 * 3
    assert {r["revision"] for r in records} == set(REVISIONS)  # both replicas answered
    for record in records:
        assert _answered_by(record["response"]) == record["revision"], record
        assert record["response"]["revision"] == record["revision"]


def test_a_revision_no_replica_serves_is_unavailable_not_answered_by_another(rolling_update: list[Replica]) -> None:
    from warrior.common.expert_client import ExpertClient, ExpertUnavailable
    from warrior.common.security import ClientSecurity

    client = ExpertClient(get_runtime().registry, security=ClientSecurity(), attempts=2, backoff_s=0.01)
    with pytest.raises(ExpertUnavailable, match="revision 'rev-gone'"):
        client.chat("coder", [{"role": "user", "content": "hi"}], {}, revision="rev-gone")
    for revision in REVISIONS:
        for _ in range(6):
            reply = client.chat("coder", [{"role": "user", "content": "hi"}], {"max_tokens": 8}, revision=revision)
            assert reply.revision == revision and reply.text.startswith(f"<{revision}>")


def test_the_ledger_refuses_an_answer_from_other_weights(tmp_path: Any) -> None:
    ledger = CallLedger(LocalStore(tmp_path), "c")
    with pytest.raises(RevisionMismatch):
        ledger.call("coder", "rev-old", "chat", {"p": 1}, lambda: {"text": "x", "revision": "rev-new"})
    assert ledger.call("coder", "rev-old", "chat", {"p": 1}, lambda: {"text": "y", "revision": "rev-old"}) == (
        {"text": "y", "revision": "rev-old"},
        False,
    )
