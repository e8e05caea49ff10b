"""Sampling values become SamplingParams, or a SamplingError naming the field before any call is made."""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from unittest.mock import Mock

import pytest

from warrior.common.expert_client import ExpertClient, ExpertRequestError, SamplingError, _Limiter, sampling_pb
from warrior.common.redis_client import connect
from warrior.common.registry import ExpertRecord, Registry
from warrior.common.security import ClientSecurity

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


def test_in_range_values_build_the_params() -> None:
    params = sampling_pb(
        {"temperature": 0.7, "top_p": 0.9, "max_tokens": UINT32_MAX, "stop": ["\n"], "seed": UINT64_MAX}
    )
    assert params.max_tokens == UINT32_MAX and params.seed == UINT64_MAX
    assert list(params.stop) == ["\n"] and params.top_p == pytest.approx(0.9)
    defaults = sampling_pb({})
    assert (defaults.temperature, defaults.top_p, defaults.max_tokens, defaults.seed) == (0.0, 1.0, 0, 0)


@pytest.mark.parametrize(
    ("sampling", "message"),
    [
        ({"max_tokens": 2**40}, f"sampling.max_tokens=1099511627776 is out of range: must be within [0, {UINT32_MAX}]"),
        ({"max_tokens": -1}, f"sampling.max_tokens=-1 is out of range: must be within [0, {UINT32_MAX}]"),
        ({"seed": -1}, f"sampling.seed=-1 is out of range: must be within [0, {UINT64_MAX}]"),
        ({"seed": 2**70}, f"sampling.seed={2**70} is out of range: must be within [0, {UINT64_MAX}]"),
        ({"seed": 10**5000}, "sampling.seed=<an integer of 16610 bits> is out of range"),
        ({"max_tokens": "many"}, "sampling.max_tokens='many' is not an integer"),
        ({"max_tokens": float("inf")}, "sampling.max_tokens=inf is not an integer"),
        ({"temperature": "hot"}, "sampling.temperature='hot' is not a number"),
    ],
)
def test_values_a_field_cannot_hold_raise_a_sampling_error_naming_it(sampling: dict[str, Any], message: str) -> None:
    with pytest.raises(SamplingError, match=re.escape(message)) as info:
        sampling_pb(sampling)
    # A request error (retrying will not help) and still the ValueError protobuf used to raise.
    assert isinstance(info.value, ExpertRequestError) and isinstance(info.value, ValueError)


def test_the_client_refuses_bad_sampling_before_calling_an_expert() -> None:
    registry = Mock(spec=Registry)
    client = ExpertClient(registry, security=ClientSecurity(), attempts=3)
    with pytest.raises(SamplingError, match=re.escape("sampling.max_tokens=")):
        client.complete("qwen", "def f():", {"max_tokens": 2**40})
    with pytest.raises(SamplingError, match=re.escape("sampling.seed=")):
        client.chat("qwen", [{"role": "user", "content": "hi"}], {"seed": -1})
    assert registry.mock_calls == []  # nothing resolved, nothing sent, nothing retried


class _HeldStub:
    """A stub whose calls wait for a release; it counts the calls in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.release = threading.Semaphore(0)

    def Complete(self, request: Any, timeout: float, metadata: Any = None) -> Any:  # noqa: N802 (gRPC's name)
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        self.release.acquire()
        with self.lock:
            self.in_flight -= 1
        return Mock(text="ok", finish_reason="stop", usage=Mock(prompt_tokens=1, completion_tokens=1), revision="r1")


def _replica(instance: str) -> ExpertRecord:
    return ExpertRecord(
        name="coder", instance=instance, endpoint=f"{instance}:1", model="m", revision="r1", engine="e", capacity=2
    )


def _settles_at(stub: _HeldStub, count: int, hold_s: float = 0.5) -> bool:
    """True when the calls in flight reach `count` within 10 s and stay there for hold_s."""
    deadline = time.monotonic() + 10
    while stub.in_flight != count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(hold_s)
    return stub.in_flight == count


def test_the_in_flight_bound_follows_the_live_replicas(redis_url: str) -> None:
    """Twice the capacity of the serving replicas: 4 calls with one replica of capacity 2, 8 once a second
    one registers, and back to 4 when it leaves (the calls over the lowered bound finish first)."""
    registry = Registry(connect(redis_url))
    registry.register(_replica("a"))
    client = ExpertClient(registry, security=ClientSecurity())
    stub = _HeldStub()
    client._stub = lambda record: stub  # type: ignore[method-assign,assignment,return-value]
    callers = [threading.Thread(target=client.complete, args=("coder", "p", {})) for _ in range(12)]
    for caller in callers:
        caller.start()
    try:
        assert _settles_at(stub, 4), stub.in_flight
        registry.register(_replica("b"))
        assert _settles_at(stub, 8), stub.in_flight
        registry.deregister("coder", "b")
        time.sleep(2 * _Limiter.LIMIT_RECHECK_S)
        for _ in range(4):  # 4 of the 8 finish; the 4 callers waiting stay waiting under the bound of 4
            stub.release.release()
        assert _settles_at(stub, 4), stub.in_flight
        assert stub.most == 8
    finally:
        for _ in callers:
            stub.release.release()
        for caller in callers:
            caller.join(10)
