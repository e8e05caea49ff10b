"""On-topic screening: a mined request that is not about programming is dropped as `off_topic`, with its score."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warrior.common.campaign_config import parse_campaign_config
from warrior.common.campaign_state import CampaignState
from warrior.common.runtime import get_runtime
from warrior.instruction_miner import tasks
from warrior.instruction_miner.topic import DEFAULT_MIN_SCORE, TopicClassifier, classifier, lexical_signal

DEV = Path(__file__).parent / "data" / "topic_dev.jsonl"
# Accuracy the classifier reaches on the set it was tuned on (measured: 106 of 107); the held-out
# figures are bench/topic.py's.
DEV_MIN_ACCURACY = 0.97

OFF_TOPIC = "Help me plan a seven-day hike in the Dolomites, with huts to sleep in and daily climbs."
CODING = "Write a Python function that merges overlapping intervals in a list of (start, end) pairs."


@pytest.fixture(scope="module")
def topic() -> TopicClassifier:
    return classifier()


@pytest.mark.parametrize(
    "text",
    [
        CODING,
        "Why does my Rust code say 'borrowed value does not live long enough' here?\n\n```rust\nlet r;\n"
        '{ let x = 5; r = &x; }\nprintln!("{}", r);\n```',
        "How do I rebase my feature branch onto main and resolve the conflicts?",
        "Write a SQL query that lists customers who ordered nothing in the last ninety days.",
        "what is the difference between a mutex and a semaphore",
    ],
)
def test_clear_programming_requests_are_kept(topic: TopicClassifier, text: str) -> None:
    scored = topic.score(text)
    assert scored.score >= DEFAULT_MIN_SCORE, scored


@pytest.mark.parametrize(
    "text",
    [
        OFF_TOPIC,
        "Give me a recipe for banana bread without eggs.",
        "Write a cover letter for a data analyst job at a hospital.",
        "What is the best way to feed a young corn snake?",
        "Summarize the main causes of the French Revolution.",
    ],
)
def test_clear_other_requests_are_dropped(topic: TopicClassifier, text: str) -> None:
    scored = topic.score(text)
    assert scored.score < DEFAULT_MIN_SCORE, scored


def test_scores_are_probabilities_and_batching_changes_nothing(topic: TopicClassifier) -> None:
    one = [topic.score(t).score for t in (CODING, OFF_TOPIC)]
    both = [s.score for s in topic.scores([CODING, OFF_TOPIC])]
    assert all(0.0 <= s <= 1.0 for s in one)
    assert both == pytest.approx(one, abs=1e-4)
    assert topic.scores([]) == []
    assert classifier() is topic  # prototypes are embedded once per process


def test_the_dev_set_reaches_its_stated_accuracy(topic: TopicClassifier) -> None:
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    assert len(rows) >= 100 and {r["label"] for r in rows} == {"coding", "other"}
    scored = topic.scores([r["text"] for r in rows])
    correct = sum((s.score >= DEFAULT_MIN_SCORE) == (r["label"] == "coding") for s, r in zip(scored, rows, strict=True))
    assert correct / len(rows) >= DEV_MIN_ACCURACY


def test_lexical_signal_counts_code_not_snakes_or_coffee() -> None:
    assert lexical_signal("```python\nfor i in range(3):\n    print(i)\n```\nWhy does this print 0?") >= 2.5
    assert lexical_signal("TypeError: 'NoneType' object is not subscriptable in my_parser.py") >= 1.5
    assert lexical_signal("How long can a ball python go without food?") <= 0.5
    assert lexical_signal("Is a cup of java in the evening bad for sleep?") <= 0.5
    assert lexical_signal("My iPhone battery drains overnight.") == 0.0


def test_the_default_threshold_is_the_configured_default() -> None:
    config = parse_campaign_config({"experts": [{"name": "a"}, {"name": "b"}]})
    assert config.screening.on_topic.enabled is True
    assert config.screening.on_topic.min_score == DEFAULT_MIN_SCORE


def _campaign(name: str, screening: dict[str, object], texts: dict[str, str]) -> CampaignState:
    rt = get_runtime()
    state = CampaignState(rt.redis, name)
    # No expert is live to judge rewordings here (test_rewording.py covers that stage).
    screening = {"decontamination": {"rewording": {"enabled": False}}, **screening}
    state.create({"campaign": name, "experts": [{"name": "a"}, {"name": "b"}], "screening": screening},
                 expected_mine=len(texts))  # fmt: skip
    for iid, text in texts.items():
        record = {"id": iid, "text": text, "attacker": "a", "finish_reason": "stop"}
        rt.store.put_json(f"runs/{name}/instructions/{iid}.json", record)
    return state


def test_screen_drops_an_off_topic_request_and_records_its_score(warrior_env: dict[str, str]) -> None:
    state = _campaign("topic", {"rating": {"enabled": False}}, {"hike": OFF_TOPIC, "code": CODING})
    rt = get_runtime()
    assert tasks.screen(rt, "topic", "hike") is False
    assert tasks.screen(rt, "topic", "code") is True
    assert state.snapshot()["instructions"]["dropped"] == {"off_topic": 1}
    scores = state.table("topic")
    assert scores["hike"]["score"] < DEFAULT_MIN_SCORE <= scores["code"]["score"]
    assert scores["hike"]["min_score"] == DEFAULT_MIN_SCORE and set(scores["hike"]) >= {"margin", "lexical"}
    kept = rt.store.get_json("runs/topic/screening/code.json")
    assert kept["topic"] == scores["code"]


def test_the_check_can_be_switched_off_or_made_stricter(warrior_env: dict[str, str]) -> None:
    rt = get_runtime()
    off = _campaign("topic-off", {"rating": {"enabled": False}, "on_topic": {"enabled": False}}, {"hike": OFF_TOPIC})
    assert tasks.screen(rt, "topic-off", "hike") is True
    assert off.table("topic") == {}
    strict = _campaign("topic-strict", {"rating": {"enabled": False}, "on_topic": {"min_score": 1.0}}, {"c": CODING})
    assert tasks.screen(rt, "topic-strict", "c") is False
    assert strict.snapshot()["instructions"]["dropped"] == {"off_topic": 1}


@pytest.fixture()
def rater(warrior_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Expert "b" served by a real warrior-expert process on the zero-latency test engine, registered in Redis."""
    env = {k: v for k, v in warrior_env.items() if not k.startswith(("WARRIOR_GRPC_TLS", "WARRIOR_GRPC_TOKEN"))}
    port_file, log_path = tmp_path / "b.endpoint", tmp_path / "b.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrior.expert_inference.server", "--name", "b", "--engine", "zero-latency-test",
             "--port-file", str(port_file), "--drain-s", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        rt = get_runtime()
        while not (port_file.exists() and rt.registry.resolve("b")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the expert did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield "b"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.stack
def test_an_off_topic_request_costs_no_rating_call(rater: str) -> None:
    rt = get_runtime()
    state = _campaign("topic-rated", {"rating": {"min_score": 0.0}}, {"hike": OFF_TOPIC, "code": CODING})
    assert tasks.screen(rt, "topic-rated", "hike") is False
    assert list(rt.store.list("runs/topic-rated/calls/")) == []  # dropped before any expert was asked
    assert "hike" not in state.table("quality")
    assert tasks.screen(rt, "topic-rated", "code") is True
    assert list(state.table("quality")["code"]["by"]) == [rater]  # the coding request was rated by the other expert
    assert list(rt.store.list("runs/topic-rated/calls/"))
    assert state.snapshot()["instructions"]["dropped"] == {"off_topic": 1}
