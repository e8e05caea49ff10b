"""Calling experts over gRPC: resolve through the registry, a deadline on every call, retry on replicas.

Channels follow warrior.common.security: TLS (and a client certificate) where the expert or this
caller requires it, and the bearer token of WARRIOR_GRPC_TOKEN(_FILE) on every call.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from warrior.common.answer_keys import forget_answer
from warrior.common.ledger import CallLedger, current_call_key, current_call_revision
from warrior.common.registry import ExpertRecord, Registry
from warrior.common.security import ClientSecurity
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

T = TypeVar("T")

# Codes worth another try on another replica or after a pause: the expert is away or busy.
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


CALL_KEY_HEADER = "x-warrior-call-key"


def _call_metadata() -> tuple[tuple[str, str], ...] | None:
    """The ledger key of this call as request metadata, so the server can answer a repeat from memory."""
    key = current_call_key()
    return None if key is None else ((CALL_KEY_HEADER, CallLedger.call_key(key)),)


class ExpertUnavailable(RuntimeError):
    """No live replica of the expert answered; the message names the expert and the last error."""


class ExpertRequestError(RuntimeError):
    """The expert refused the request itself (bad argument, prompt too long); retrying will not help."""


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # The revision of the weights that answered.
    revision: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class CandidateScores:
    """Each candidate's log-probability, and the revision of the weights that scored them."""

    logprobs: dict[str, float]
    revision: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"logprobs": self.logprobs, "revision": self.revision}


def _retry_after_s(exc: grpc.RpcError, default_s: float = 0.5) -> float:
    """The server's `retry-after-ms` hint from a RESOURCE_EXHAUSTED answer."""
    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "retry-after-ms":
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                break
    return default_s


class SamplingError(ExpertRequestError, ValueError):
    """A sampling value cannot be sent to an expert (out of its field's range); the message names the field."""


# The integer fields of SamplingParams and the range their protobuf types (uint32, uint64) hold.
_SAMPLING_INTS = {"max_tokens": 2**32 - 1, "seed": 2**64 - 1}


def _shown(value: Any) -> str:
    """A sampling value for a message: str() of an integer of thousands of digits raises, so it is shown by size."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    return f"{value!r:.80}"


def _sampling_int(sampling: dict[str, Any], field: str) -> int:
    raw = sampling.get(field, 0)
    try:
        value = int(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise SamplingError(f"sampling.{field}={_shown(raw)} is not an integer") from None
    high = _SAMPLING_INTS[field]
    if not 0 <= value <= high:
        raise SamplingError(f"sampling.{field}={_shown(value)} is out of range: must be within [0, {high}]")
    return value


def _sampling_float(sampling: dict[str, Any], field: str, default: float) -> float:
    raw = sampling.get(field, default)
    try:
        return float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a huge int
        raise SamplingError(f"sampling.{field}={_shown(raw)} is not a number") from None


def sampling_pb(sampling: dict[str, Any]) -> pb.SamplingParams:
    """The SamplingParams for a sampling dict; a value its field cannot hold raises SamplingError naming it."""
    return pb.SamplingParams(
        temperature=_sampling_float(sampling, "temperature", 0.0),
        top_p=_sampling_float(sampling, "top_p", 1.0),
        max_tokens=_sampling_int(sampling, "max_tokens"),
        stop=list(sampling.get("stop", [])),
        seed=_sampling_int(sampling, "seed"),
    )


class _Limiter:
    """Calls in flight to one expert, under a limit that follows its live replicas.

    The limit is read when a call asks for a slot and again while it waits (at each release, and
    every LIMIT_RECHECK_S in case replicas joined meanwhile), so a replica that joins raises it and
    one that leaves lowers it: calls over a lowered limit finish, new ones wait until they are under it.
    """

    LIMIT_RECHECK_S = 0.2

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.in_flight = 0

    @contextmanager
    def slot(self, limit: int, refresh: Callable[[], int]) -> Iterator[None]:
        """Hold one slot; `limit` is the bound now, `refresh()` reads it again while waiting."""
        with self._cond:
            while self.in_flight >= limit:
                self._cond.wait(self.LIMIT_RECHECK_S)
                limit = refresh()
            self.in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()


class ExpertClient:
    """A thread-safe client for every expert in the registry."""

    def __init__(
        self,
        registry: Registry,
        *,
        deadline_s: float = 300.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        busy_budget_s: float = 120.0,
        in_flight_per_expert: int = 0,
        security: ClientSecurity | None = None,
    ) -> None:
        """in_flight_per_expert bounds this process's concurrent calls to one expert; 0 means twice
        the capacity its serving replicas announce, read again as replicas join and leave (enough to
        keep a batching engine full, not so many that requests only queue there). security: TLS
        material and token (default: from the environment)."""
        self._registry = registry
        self._security = security if security is not None else ClientSecurity.from_env()
        self._deadline_s = deadline_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._busy_budget_s = busy_budget_s
        self._in_flight_per_expert = in_flight_per_expert
        self._channels: dict[tuple[str, bool], grpc.Channel] = {}
        self._limiters: dict[str, _Limiter] = {}
        self._lock = threading.Lock()

    def forget_answer(self, expert: str, revision: str, call_key: str) -> None:
        """Let the experts' shared copy of a recorded call's answer go (a CallLedger's `forget`)."""
        client = getattr(self._registry, "redis", None)  # a registry stand-in may have none
        if client is not None:
            forget_answer(client, expert, revision, call_key)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def _stub(self, record: ExpertRecord) -> pb_grpc.ExpertInferenceServiceStub:
        key = (record.endpoint, record.tls)
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._security.channel(
                    record.endpoint,
                    tls=record.tls,
                    options=[
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                        ("grpc.max_send_message_length", 64 * 1024 * 1024),
                    ],
                )
                self._channels[key] = channel
        return pb_grpc.ExpertInferenceServiceStub(channel)

    def replica(self, expert: str) -> ExpertRecord:
        """One live replica of the expert (for its revision); ExpertUnavailable when none is registered."""
        replicas = self._registry.resolve(expert)
        if not replicas:
            raise ExpertUnavailable(f"expert {expert!r} is not registered (no live replica)")
        return random.choice(replicas)

    @staticmethod
    def _pinned(expert: str, revision: str | None) -> str | None:
        """The revision a call must be answered by: the one given, else the one of the ledger call in
        progress on this thread (warrior.common.ledger), else None (any)."""
        return revision or current_call_revision(expert)

    def _limit(self, replicas: Sequence[ExpertRecord]) -> int:
        """The bound on calls in flight to an expert with these serving replicas."""
        return self._in_flight_per_expert or max(2, 2 * sum(r.capacity for r in replicas))

    def _slot(self, expert: str, replicas: Sequence[ExpertRecord]) -> AbstractContextManager[None]:
        """A slot among the expert's calls in flight; while waiting, the limit follows the registry."""
        with self._lock:
            limiter = self._limiters.get(expert)
            if limiter is None:
                limiter = self._limiters[expert] = _Limiter()
        return limiter.slot(self._limit(replicas), lambda: self._limit(self._registry.resolve(expert)))

    def _invoke(
        self,
        expert: str,
        call: Callable[[pb_grpc.ExpertInferenceServiceStub, float], T],
        revision: str | None = None,
    ) -> tuple[T, str]:
        """Call one replica; on failure try the others, then back off and retry. Returns the reply and
        the revision that answered.

        With a revision, only replicas registered with it are called, and an answer naming another
        revision (the replica was redeployed under the same address) counts as a failed try.
        A busy replica (RESOURCE_EXHAUSTED) says how long to wait in its `retry-after-ms` trailer;
        busy answers are retried within a time budget rather than counted as failed attempts, so
        backpressure slows callers down instead of failing their work.
        """
        last_error = "no live replica" if revision is None else f"no live replica serving revision {revision!r}"
        attempt = 0
        busy_until = time.monotonic() + self._busy_budget_s
        while attempt < self._attempts:
            serving = self._registry.resolve(expert)
            replicas = [r for r in serving if revision is None or r.revision == revision]
            random.shuffle(replicas)
            busy_wait = 0.0
            for record in replicas:
                try:
                    with self._slot(expert, serving):
                        reply = call(self._stub(record), self._deadline_s)
                    answered = str(getattr(reply, "revision", "")) or record.revision
                    if revision is None or answered == revision:
                        return reply, answered
                    last_error = f"{record.endpoint}: answered with revision {answered!r}, not {revision!r}"
                except grpc.RpcError as exc:
                    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                    detail = exc.details() if hasattr(exc, "details") else str(exc)
                    if code not in _RETRYABLE:
                        message = f"expert {expert!r} refused the request: {code.name}: {detail}"
                        raise ExpertRequestError(message) from None
                    last_error = f"{record.endpoint}: {code.name}: {detail}"
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        busy_wait = max(busy_wait, _retry_after_s(exc))
            if busy_wait and time.monotonic() + busy_wait < busy_until:
                time.sleep(busy_wait * random.uniform(1.0, 1.5))
                continue
            attempt += 1
            if attempt < self._attempts:
                time.sleep(self._backoff_s * (2 ** (attempt - 1)))
        raise ExpertUnavailable(f"expert {expert!r} unavailable after {self._attempts} attempts ({last_error})")

    # Each call takes the `revision` it must be answered by (default: the one of the ledger call in
    # progress on this thread, if any; else any replica's) and reports the revision that answered.
    def model_info(self, expert: str, *, revision: str | None = None) -> pb.GetModelInfoResponse:
        reply: pb.GetModelInfoResponse
        reply, _ = self._invoke(
            expert,
            lambda s, t: s.GetModelInfo(pb.GetModelInfoRequest(), timeout=min(t, 30.0)),
            self._pinned(expert, revision),
        )
        return reply

    def complete(
        self, expert: str, prompt: str, sampling: dict[str, Any], *, revision: str | None = None
    ) -> Generation:
        request = pb.CompleteRequest(prompt=prompt, sampling=sampling_pb(sampling))
        reply, answered = self._invoke(
            expert,
            lambda s, t: s.Complete(request, timeout=t, metadata=_call_metadata()),
            self._pinned(expert, revision),
        )
        usage = reply.usage
        return Generation(reply.text, reply.finish_reason, usage.prompt_tokens, usage.completion_tokens, answered)

    def chat(
        self, expert: str, messages: Sequence[dict[str, str]], sampling: dict[str, Any], *, revision: str | None = None
    ) -> Generation:
        request = pb.ChatRequest(
            messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            sampling=sampling_pb(sampling),
        )
        reply, answered = self._invoke(
            expert,
            lambda s, t: s.Chat(request, timeout=t, metadata=_call_metadata()),
            self._pinned(expert, revision),
        )
        usage = reply.usage
        return Generation(reply.text, reply.finish_reason, usage.prompt_tokens, usage.completion_tokens, answered)

    def score_candidates(
        self,
        expert: str,
        messages: Sequence[dict[str, str]],
        assistant_prefix: str,
        candidates: Sequence[str],
        *,
        revision: str | None = None,
    ) -> CandidateScores:
        request = pb.ScoreCandidatesRequest(
            messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            assistant_prefix=assistant_prefix,
            candidates=list(candidates),
        )
        reply, answered = self._invoke(
            expert,
            lambda s, t: s.ScoreCandidates(request, timeout=t, metadata=_call_metadata()),
            self._pinned(expert, revision),
        )
        return CandidateScores({score.candidate: score.logprob for score in reply.scores}, answered)
