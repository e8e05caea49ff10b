"""What an inference engine offers the server: generation from a prompt and candidate scoring."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from warrior.common.chat_template import COMPLETION_STOPS


class EngineRequestError(ValueError):
    """A request the engine cannot serve as asked (e.g. a prompt longer than the context)."""


class EngineBusy(RuntimeError):
    """Too many requests are waiting; the caller should back off and retry."""


class EngineUnavailable(RuntimeError):
    """The backend behind the engine cannot be reached (e.g. a remote server is down)."""


@dataclass(frozen=True)
class SamplingSpec:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Generated:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class EngineInfo:
    model: str
    revision: str
    engine: str
    chat_template: str
    bos_token: str
    eos_token: str
    stop_strings: tuple[str, ...]
    context_length: int
    capacity: int
    capabilities: dict[str, bool] = field(default_factory=dict)
    # True when the backend applies its own chat template (an OpenAI-compatible server): the server
    # then forwards chats as messages instead of rendering them into a prompt.
    native_chat: bool = False


def local_model_info(
    *,
    model: str,
    revision: str,
    engine: str,
    chat_template: str,
    bos_token: str,
    eos_token: str,
    eot_token: str,
    context_length: int,
    capacity: int,
) -> EngineInfo:
    """Info of an engine that runs the model itself: it completes, renders chats and scores candidates.

    A model with a chat template stops at its end-of-turn tokens; one served completion-style stops
    where the transcript's next question or answer would begin.
    """
    if chat_template:
        stops = tuple(dict.fromkeys(s for s in (eos_token, eot_token) if s))
    else:
        stops = COMPLETION_STOPS
    return EngineInfo(
        model=model,
        revision=revision,
        engine=engine,
        chat_template=chat_template,
        bos_token=bos_token,
        eos_token=eos_token,
        stop_strings=stops,
        context_length=context_length,
        capacity=capacity,
        capabilities={
            "raw_completion": True,
            "chat": True,
            "candidate_logprobs": True,
            "chat_template": bool(chat_template),
        },
    )


class Engine(Protocol):
    info: EngineInfo

    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        """Continue the prompt exactly as given (the server has already applied any template)."""
        ...

    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        """(sum of log-probabilities, token count) of each candidate continuing the context."""
        ...

    def close(self) -> None: ...


class NativeChatEngine(Engine, Protocol):
    """An engine whose backend renders chats itself (info.native_chat is True)."""

    async def chat(self, messages: list[dict[str, str]], sampling: SamplingSpec) -> Generated: ...
