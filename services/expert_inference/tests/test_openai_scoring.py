"""Candidate scoring of the OpenAI-compatible engine against a fake OpenAI-compatible server on loopback.

The fake tokenizes by character and gives each character a fixed log-probability, so the expected
score of a candidate is known exactly: the sum over all of its characters, the context's excluded.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from warrior.expert_inference.engine import EngineRequestError
from warrior.expert_inference.openai_engine import OpenAICompatibleEngine, candidate_logprob

CONTEXT = "<|im_start|>user\nRate it from 1 to 10.<|im_end|>\n<|im_start|>assistant\nRating: "


def char_logprob(char: str) -> float:
    return -(0.1 + (ord(char) % 7) / 10)


class FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/models and /v1/completions; with echo, one token per prompt character (vLLM's shape)."""

    echo_supported = True
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._send({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        prompt: str = body["prompt"]
        generated = "7"
        if body.get("echo") and self.echo_supported:
            text = prompt + generated
            tokens = list(text)
            lps: list[float | None] = [None, *(char_logprob(c) for c in tokens[1:])]
            offsets = list(range(len(text)))
        else:  # the first generated token with its top alternatives: digits, "1" likeliest
            text = generated
            tokens, lps, offsets = [generated], [-0.9], [len(prompt)]
        top = [{d: -0.5 - int(d) / 10 for d in "0123456789"}] * len(tokens)
        logprobs = {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": top}
        self._send({"choices": [{"text": text, "finish_reason": "length", "logprobs": logprobs}], "usage": {}})


@pytest.fixture()
def fake_server() -> Iterator[type[FakeOpenAI]]:
    handler = type("Handler", (FakeOpenAI,), {"requests": [], "echo_supported": True})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def _score(url: str, candidates: list[str]) -> list[tuple[float, int]]:
    async def main() -> list[tuple[float, int]]:
        engine = await OpenAICompatibleEngine.connect(url, chat_template="{{ messages }}")
        try:
            return await engine.score(CONTEXT, candidates)
        finally:
            await engine.aclose()

    return asyncio.run(main())


def test_whole_candidates_are_scored_so_1_and_10_differ(fake_server: type[FakeOpenAI]) -> None:
    url = fake_server.url  # type: ignore[attr-defined]
    candidates = ["1", "10", "Tie", " 9"]
    scores = dict(zip(candidates, _score(url, candidates), strict=True))
    assert scores["1"] != scores["10"]
    for candidate, (logprob, tokens) in scores.items():
        # Every token of the candidate counts, none of the context's and not the generated one.
        assert tokens == len(candidate)
        assert logprob == pytest.approx(sum(char_logprob(c) for c in candidate))
    assert scores["10"][0] == pytest.approx(scores["1"][0] + char_logprob("0"))
    assert len(fake_server.requests) == len(candidates)
    for body in fake_server.requests:
        assert body["echo"] is True and body["logprobs"] >= 1 and body["max_tokens"] == 1
        assert body["prompt"].startswith(CONTEXT) and body["prompt"][len(CONTEXT) :] in candidates


def test_a_server_that_does_not_echo_cannot_score(fake_server: type[FakeOpenAI]) -> None:
    fake_server.echo_supported = False
    with pytest.raises(EngineRequestError, match="no prompt log-probabilities"):
        _score(fake_server.url, ["1", "10"])  # type: ignore[attr-defined]


def test_a_token_straddling_the_context_end_counts_with_the_candidate() -> None:
    """The context is "abc", the candidate "10": the tokens "c1" and "0" spell it; "!" was generated."""
    logprobs: dict[str, list[Any]] = {"tokens": ["ab", "c1", "0", "!"], "token_logprobs": [None, -1.0, -2.0, -4.0]}
    assert candidate_logprob({"text": "abc10!", "logprobs": logprobs}, "abc10", "10") == (-3.0, 2)
    # A server that leaves the generated token out of the list (llama-cpp-python), or names an end of
    # sequence the text leaves out.
    short = {"tokens": logprobs["tokens"][:3], "token_logprobs": logprobs["token_logprobs"][:3]}
    assert candidate_logprob({"text": "abc10!", "logprobs": short}, "abc10", "10") == (-3.0, 2)
    eos = {"tokens": ["ab", "c1", "0", "</s>"], "token_logprobs": [None, -1.0, -2.0, -4.0]}
    assert candidate_logprob({"text": "abc10", "logprobs": eos}, "abc10", "10") == (-3.0, 2)
    assert candidate_logprob({"text": "abc10!", "logprobs": None}, "abc10", "10") is None
