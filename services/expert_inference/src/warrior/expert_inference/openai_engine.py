"""OpenAICompatibleEngine: fronts an existing OpenAI-compatible server (vllm serve, SGLang, TGI, llama.cpp's server).

Completions go to `/v1/completions`, chats to `/v1/chat/completions` (the backend applies its own
chat template, so `info.native_chat` is True), and candidate scoring reads the prompt log-probabilities
the backend echoes for the context followed by the whole candidate.

What the HTTP API cannot tell us, and how the engine copes:

* Tokenisation is the backend's. `bos_token`/`eos_token` are "" (the backend adds its own BOS to a
  string prompt) and `stop_strings` is (): the backend stops at the model's end-of-turn token by
  itself, but text rendered with `info.chat_template` and sent to `/v1/completions` gets no extra stops.
* Scoring sends context + candidate to `/v1/completions` with `echo` and `logprobs` and sums the
  log-probabilities of the tokens that cover the candidate (see `candidate_logprob`), so "1" and "10"
  are told apart. The backend's tokenizer is unknown here: a token that straddles the end of the
  context counts with the candidate's. A backend that does not echo prompt log-probabilities
  (llama.cpp's C++ server) cannot score: the request is refused (serve such a model without
  --chat-template-file, or judge with judge_mode: text). Scoring needs the rendered prompt:
  `candidate_logprobs` is advertised only with a chat template.
* `context_length` is the server's `max_model_len` from `/v1/models` where it reports one (vLLM,
  SGLang), else 0 (unknown).
* Sampling seed 0 means "unset" (as in the gRPC contract) and is not sent, so sampled requests differ.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any
from urllib.parse import urlsplit

import httpx

from warrior.common.security import redact_url
from warrior.expert_inference.engine import (
    EngineBusy,
    EngineInfo,
    EngineRequestError,
    EngineUnavailable,
    Generated,
    SamplingSpec,
)

_MESSAGE_CHARS = 300
_DISCOVERY_TIMEOUT_S = 10.0


def _normalise_base_url(base_url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/v1` all name the same server."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise EngineRequestError(f"base_url {redact_url(base_url)!r} must start with http:// or https://")
    if "@" in urlsplit(url).netloc:
        # Credentials in the URL would reach logs and error messages; the key has its own variable.
        raise EngineRequestError(
            f"base_url {redact_url(base_url)!r} may not carry credentials: give the API key in the variable "
            "named by --openai-api-key-env"
        )
    return url


def _server_message(response: httpx.Response, secret: str | None = None) -> str:
    """The error text of a refusal in any of the usual shapes (OpenAI, vLLM, TGI, FastAPI), truncated.

    A server that echoes the API key back (some do, in "invalid key ..." messages) has it masked.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    message: Any = body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message", error)
        elif error is not None:
            message = error
        elif "message" in body:
            message = body["message"]
        elif "detail" in body:
            message = body["detail"]
    text = " ".join(str(message).split())
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _check(response: httpx.Response, base_url: str, secret: str | None = None) -> dict[str, Any]:
    """The JSON body of a 2xx response; engine errors for the rest (the key is never part of a message)."""
    status = response.status_code
    if status >= 400:
        message = _server_message(response, secret)
        if status in (400, 404, 422):
            raise EngineRequestError(f"{base_url} refused the request (HTTP {status}): {message}")
        if status in (429, 503):
            raise EngineBusy(f"{base_url} is busy (HTTP {status}): {message}")
        if status in (401, 403):
            raise EngineUnavailable(f"{base_url} rejected the credentials (HTTP {status}): {message}")
        if status >= 500:
            raise EngineUnavailable(f"{base_url} failed (HTTP {status}): {message}")
        raise EngineRequestError(f"{base_url} refused the request (HTTP {status}): {message}")
    try:
        data = response.json()
    except ValueError:
        raise EngineUnavailable(f"{base_url} answered {response.url.path} with non-JSON content") from None
    if not isinstance(data, dict):
        raise EngineUnavailable(f"{base_url} answered {response.url.path} with an unexpected JSON value")
    return data


def _transport_error(exc: httpx.HTTPError, url: str, timeout_s: float) -> EngineUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        return EngineUnavailable(f"OpenAI-compatible server at {url} did not answer within {timeout_s:g}s")
    return EngineUnavailable(f"cannot reach the OpenAI-compatible server at {url}: {type(exc).__name__}: {exc}")


def _first_choice(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EngineUnavailable(f"{base_url} returned a response without choices")
    choice: dict[str, Any] = choices[0]
    return choice


def _generated(data: dict[str, Any], text: Any, finish_reason: Any) -> Generated:
    """Normalises finish reasons ("eos_token", "stop_sequence", null...) to "stop" unless it is "length"."""
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Generated(
        text=text if isinstance(text, str) else "",
        finish_reason="length" if finish_reason == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _tail_tokens(tokens: list[str], choice_text: Any, prompt: str, candidate: str) -> int | None:
    """How many echoed tokens end the prompt: all of them, or all but the generated token(s) after it.

    Servers differ: vLLM lists the generated token after the prompt's, llama-cpp-python does not, and
    an end-of-sequence token may be listed by name while the text leaves it out.
    """
    joined = "".join(tokens)
    generated = choice_text[len(prompt) :] if isinstance(choice_text, str) and choice_text.startswith(prompt) else ""
    if generated and joined.endswith(candidate + generated):
        kept, dropped = len(tokens), 0
        while kept and dropped < len(generated):
            kept -= 1
            dropped += len(tokens[kept])
        return kept if dropped == len(generated) else None
    if joined.endswith(candidate):
        return len(tokens)
    if len(tokens) > 1 and joined[: -len(tokens[-1]) or None].endswith(candidate):
        return len(tokens) - 1
    return None


def candidate_logprob(choice: dict[str, Any], prompt: str, candidate: str) -> tuple[float, int] | None:
    """(sum of log-probabilities, token count) of the echoed prompt tokens that spell the candidate.

    `choice` is a completions choice for `prompt` (the context, then the candidate) asked with echo
    and logprobs ({"tokens", "token_logprobs"}). The candidate ends the prompt, so its tokens are found
    from the end, by their text: every token that covers part of it counts, one straddling the end
    of the context too. (The servers' `text_offset` cannot be trusted: some count special tokens as
    empty.) None when the backend did not echo the prompt's log-probabilities.
    """
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    tokens, lps = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(lps, list) or len(tokens) != len(lps) or not candidate:
        return None
    texts = [str(t) for t in tokens]
    end = _tail_tokens(texts, choice.get("text"), prompt, candidate)
    if end is None:
        return None
    total, count, covered = 0.0, 0, 0
    for i in range(end - 1, -1, -1):
        if covered >= len(candidate):
            break
        lp = lps[i]
        if not isinstance(lp, int | float) or math.isnan(lp):
            return None  # the first prompt token has none: the candidate must follow a context
        total += float(lp)
        count += 1
        covered += len(texts[i])
    return (total, count) if covered >= len(candidate) else None


class OpenAICompatibleEngine:
    """A NativeChatEngine over an OpenAI-compatible HTTP server; see the module docstring.

    Construction is blocking (it asks `/v1/models` which model is served); `connect` does it off the
    event loop. The HTTP client is created lazily in the running event loop, and again if the loop changes.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        chat_template: str = "",
        capacity: int = 8,
        timeout_s: float = 300.0,
    ) -> None:
        if capacity < 1:
            raise EngineRequestError(f"capacity={capacity} must be at least 1")
        self.base_url = _normalise_base_url(base_url)
        self._api_key = api_key or None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._capacity = capacity
        self._max_waiting = capacity * 16
        self._waiting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closing: asyncio.Task[None] | None = None

        served, context_length = self._discover(model)
        self.model = served
        self.info = EngineInfo(
            model=served,
            revision="oa-" + hashlib.sha256(served.encode("utf-8")).hexdigest()[:12],
            engine="openai",
            chat_template=chat_template,
            bos_token="",
            eos_token="",
            stop_strings=(),
            context_length=context_length,
            capacity=capacity,
            capabilities={
                "raw_completion": True,
                "chat": True,
                "candidate_logprobs": bool(chat_template),
                "chat_template": bool(chat_template),
            },
            native_chat=True,
        )

    @classmethod
    async def connect(
        cls,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        chat_template: str = "",
        capacity: int = 8,
        timeout_s: float = 300.0,
    ) -> OpenAICompatibleEngine:
        """Like the constructor, without blocking the event loop during model discovery."""
        return await asyncio.to_thread(
            lambda: cls(
                base_url,
                model=model,
                api_key=api_key,
                chat_template=chat_template,
                capacity=capacity,
                timeout_s=timeout_s,
            )
        )

    def _discover(self, wanted: str | None) -> tuple[str, int]:
        url = f"{self.base_url}/v1/models"
        timeout = min(self._timeout_s, _DISCOVERY_TIMEOUT_S)
        try:
            with httpx.Client(headers=self._headers, timeout=timeout) as client:
                response = client.get(url)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, url, timeout) from exc
        listing = _check(response, self.base_url, self._api_key).get("data")
        models = (
            [m for m in listing if isinstance(m, dict) and isinstance(m.get("id"), str)]
            if isinstance(listing, list)
            else []
        )
        ids = [str(m["id"]) for m in models]
        if not ids:
            raise EngineUnavailable(f"{url} lists no models")
        chosen = models[0] if wanted is None else next((m for m in models if m["id"] == wanted), None)
        if chosen is None:
            raise EngineRequestError(f"model {wanted!r} is not served by {self.base_url}; it serves {', '.join(ids)}")
        max_len = chosen.get("max_model_len")
        return str(chosen["id"]), int(max_len) if isinstance(max_len, int) and max_len > 0 else 0

    # -- transport -------------------------------------------------------------------------
    def _state(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._slots is None or self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(self._timeout_s, pool=None),
                limits=httpx.Limits(max_connections=self._capacity, max_keepalive_connections=self._capacity),
            )
            self._slots = asyncio.Semaphore(self._capacity)
        return self._client, self._slots

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """At most `capacity` requests in flight; beyond 16x that many waiting, EngineBusy."""
        if self._waiting >= self._max_waiting:
            raise EngineBusy(f"{self._waiting} requests already waiting (limit {self._max_waiting})")
        client, slots = self._state()
        url = f"{self.base_url}{path}"
        self._waiting += 1
        try:
            async with slots:
                response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, url, self._timeout_s) from exc
        finally:
            self._waiting -= 1
        return _check(response, self.base_url, self._api_key)

    def _sampling_body(self, sampling: SamplingSpec) -> dict[str, Any]:
        greedy = sampling.temperature <= 0.0
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": sampling.max_tokens,
            "temperature": 0.0 if greedy else sampling.temperature,
            "top_p": 1.0 if greedy else (sampling.top_p or 1.0),
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed:
            body["seed"] = sampling.seed
        return body

    # -- engine ----------------------------------------------------------------------------
    async def generate(self, prompt: str, sampling: SamplingSpec) -> Generated:
        """The prompt goes as-is to /v1/completions (the backend may prepend its BOS token)."""
        data = await self._post("/v1/completions", self._sampling_body(sampling) | {"prompt": prompt})
        choice = _first_choice(data, self.base_url)
        return _generated(data, choice.get("text"), choice.get("finish_reason"))

    async def chat(self, messages: list[dict[str, str]], sampling: SamplingSpec) -> Generated:
        """The backend renders the messages with its own chat template."""
        data = await self._post("/v1/chat/completions", self._sampling_body(sampling) | {"messages": messages})
        choice = _first_choice(data, self.base_url)
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        return _generated(data, content, choice.get("finish_reason"))

    async def score(self, context: str, candidates: list[str]) -> list[tuple[float, int]]:
        """Each candidate's whole log-probability after the context, from the prompt log-probabilities the
        backend echoes for context + candidate (one request per candidate); see candidate_logprob."""
        return list(await asyncio.gather(*(self._score_one(context, c) for c in candidates)))

    async def _score_one(self, context: str, candidate: str) -> tuple[float, int]:
        text = context + candidate
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": 1, "echo": True}
        data = await self._post("/v1/completions", body)
        scored = candidate_logprob(_first_choice(data, self.base_url), text, candidate)
        if scored is None:
            raise EngineRequestError(
                f"{self.base_url} returned no prompt log-probabilities for model {self.model!r} (echo with "
                "logprobs): it cannot score candidates; judge and rate in text mode"
            )
        return scored

    async def aclose(self) -> None:
        client, self._client, self._slots, self._loop = self._client, None, None, None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Closes the HTTP client on its loop: scheduled when that loop is running, else run there now.

        From inside a coroutine prefer `await aclose()`: a scheduled close may not run before the loop ends.
        """
        client, loop = self._client, self._loop
        self._client, self._slots, self._loop = None, None, None
        if client is None or loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._closing = loop.create_task(client.aclose())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        else:
            loop.run_until_complete(client.aclose())
