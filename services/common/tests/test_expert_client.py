"""Sampling values become SamplingParams, or a SamplingError naming the field before any call is made."""

from __future__ import annotations

import re
from typing import Any
from unittest.mock import Mock

import pytest

from warrior.common.expert_client import ExpertClient, ExpertRequestError, SamplingError, sampling_pb
from warrior.common.registry import Registry
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
