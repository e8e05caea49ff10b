"""Chat templates: render a conversation, and derive the pre-query prefix used to mine instructions.

The pre-query prefix is the model's own template rendered up to the opening of a user turn: given
only that, an instruction-tuned model writes a plausible user request itself (Magpie). It is
derived from the template by rendering a conversation whose user message is a sentinel and
cutting before the sentinel, so no model needs a hand-written prefix.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Template
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SENTINEL = "\u2063WARRIOR-SENTINEL-7f3a\u2063"

# The format for models without a chat template (base models): a plain transcript that a base
# model continues naturally. Mining stops at the answer header; answering stops at the next question.
COMPLETION_QUESTION_HEADER = "### Question\n"
COMPLETION_ANSWER_HEADER = "### Answer\n"
COMPLETION_STOPS = ("\n### Question", "\n### Answer")


class TemplateError(ValueError):
    """A chat template that cannot render the conversation or cannot yield a pre-query prefix."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def _raise(message: str) -> None:
    raise TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env


@functools.lru_cache(maxsize=64)
def _compiled(template: str) -> Template:
    """Compiling a template costs milliseconds and servers render one per request: compile each once."""
    return _environment().from_string(template)


def render_chat(
    template: str,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Render messages with a Hugging Face style Jinja chat template."""
    try:
        return _compiled(template).render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except TemplateError:
        raise
    except JinjaTemplateError as exc:
        raise TemplateError(f"chat template failed to render: {exc}") from None


def _fold_system(messages: Sequence[Message]) -> list[Message]:
    """For templates that refuse a system role: prepend the system text to the first user turn."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if system and rest and rest[0].role == "user":
        rest[0] = Message("user", f"{system}\n\n{rest[0].content}")
    return rest


def render_chat_lenient(template: str, messages: Sequence[Message], **kwargs: Any) -> str:
    """Like render_chat, but folds the system prompt into the user turn when the template refuses it."""
    try:
        return render_chat(template, messages, **kwargs)
    except TemplateError:
        if not any(m.role == "system" for m in messages):
            raise
        return render_chat(template, _fold_system(messages), **kwargs)


def prequery_prefix(template: str, system_prompt: str | None, *, bos_token: str = "", eos_token: str = "") -> str:
    """The template rendered up to where the user's words begin.

    Raises TemplateError when the template does not place the user's text verbatim exactly once,
    which is what a pre-query prefix needs.
    """
    messages = [Message("user", _SENTINEL)]
    if system_prompt:
        messages.insert(0, Message("system", system_prompt))
    rendered = render_chat_lenient(
        template, messages, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=False
    )
    count = rendered.count(_SENTINEL)
    if count != 1:
        raise TemplateError(
            f"chat template places the user message {count} times (expected once); cannot derive a pre-query prefix"
        )
    prefix = rendered[: rendered.index(_SENTINEL)]
    if not prefix.strip():
        raise TemplateError("chat template renders nothing before the user message; cannot derive a pre-query prefix")
    return prefix


def completion_prompt(messages: Sequence[Message], assistant_prefix: str = "") -> str:
    """A conversation as a plain transcript, for models without a chat template."""
    parts: list[str] = []
    for m in messages:
        if m.role == "system":
            parts.append(m.content.strip() + "\n\n")
        elif m.role == "user":
            parts.append(COMPLETION_QUESTION_HEADER + m.content.strip() + "\n\n")
        else:
            parts.append(COMPLETION_ANSWER_HEADER + m.content.strip() + "\n\n")
    parts.append(COMPLETION_ANSWER_HEADER + assistant_prefix)
    return "".join(parts)


def completion_prequery_prefix(system_prompt: str | None) -> str:
    """The completion-style pre-query prefix: the transcript up to where a question begins."""
    head = (system_prompt.strip() + "\n\n") if system_prompt else ""
    return head + COMPLETION_QUESTION_HEADER
