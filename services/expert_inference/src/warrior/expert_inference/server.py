"""The expert-inference gRPC server: serves one engine, registers itself, deregisters on SIGTERM.

TLS, mutual TLS and the bearer token come from the environment (warrior.common.security). When any
of them is on, every RPC on the main port needs them, health checks included; `--health-port` then
serves grpc.health.v1 alone, in plain text and without a token, for probes that speak neither
(Kubernetes' native gRPC probes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.exceptions import RedisError

from warrior.common import metrics
from warrior.common.chat_template import (
    Message,
    TemplateError,
    completion_prompt,
    prequery_prefix,
    render_chat_lenient,
)
from warrior.common.expert_client import CALL_KEY_HEADER
from warrior.common.logs import configure_logging
from warrior.common.redis_client import connect, connect_async
from warrior.common.registry import ExpertRecord, Registry, parse_labels
from warrior.common.security import SecurityConfigError, ServerSecurity
from warrior.common.settings import Settings
from warrior.expert_inference.answer_cache import DEFAULT_TTL_S, TIMEOUT_S, SharedAnswers
from warrior.expert_inference.engine import (
    Engine,
    EngineBusy,
    EngineRequestError,
    EngineUnavailable,
    NativeChatEngine,
    SamplingSpec,
)
from warrior.v1 import expert_inference_pb2 as pb
from warrior.v1 import expert_inference_pb2_grpc as pb_grpc

log = logging.getLogger("warrior.expert_inference")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExpertInferenceService"].full_name
MAX_PROMPT_CHARS = 1_000_000
MAX_CANDIDATES = 64
_ROLES = {"system", "user", "assistant"}


ANSWER_CACHE = 4096  # answers kept in memory by caller ledger key (Redis keeps them for every replica)
RETRY_AFTER_MS = 500  # the back-off an overloaded engine asks callers for (trailing metadata retry-after-ms)
_Reply = TypeVar("_Reply", bound=ProtoMessage)


class _Invalid(ValueError):
    pass


def _sampling(params: pb.SamplingParams, default_max_tokens: int) -> SamplingSpec:
    # Written as "not within" so that NaN, which fails every comparison, is refused too.
    if not 0 <= params.temperature <= 5:
        raise _Invalid(f"sampling.temperature={params.temperature} must be within [0, 5]")
    if not 0 <= params.top_p <= 1:
        raise _Invalid(f"sampling.top_p={params.top_p} must be within (0, 1]")
    if len(params.stop) > 16:
        raise _Invalid(f"sampling.stop has {len(params.stop)} strings (at most 16)")
    return SamplingSpec(
        temperature=params.temperature,
        top_p=params.top_p or 1.0,
        max_tokens=params.max_tokens or default_max_tokens,
        stop=tuple(s for s in params.stop if s),
        seed=params.seed,
    )


def _messages(raw: Sequence[pb.ChatMessage]) -> list[Message]:
    if not raw:
        raise _Invalid("messages is empty")
    out = []
    for i, m in enumerate(raw):
        if m.role not in _ROLES:
            raise _Invalid(f"messages[{i}].role={m.role!r} must be one of system, user, assistant")
        out.append(Message(m.role, m.content))
    if sum(len(m.content) for m in out) > MAX_PROMPT_CHARS:
        raise _Invalid(f"messages exceed {MAX_PROMPT_CHARS} characters")
    return out


class ExpertInferenceServicer(pb_grpc.ExpertInferenceServiceServicer):
    """Maps the contract onto an engine; validation errors become INVALID_ARGUMENT."""

    def __init__(self, name: str, engine: Engine, shared: SharedAnswers | None = None) -> None:
        self.name = name
        self.engine = engine
        self.prequery_prefix = check_prequery(engine)
        # Requests being served now; the heartbeat reports it as the replica's load.
        self.in_flight = 0
        # Answers by the caller's ledger key: a caller that died before recording an answer gets it
        # again without a second engine call when its work is redelivered (bounded, most recent kept).
        # `shared` keeps them in Redis as well, for every replica of this expert: a repeat reaching
        # another replica, or this one restarted after a kill, is not run again either.
        self.shared = shared
        self._answered: OrderedDict[str, Any] = OrderedDict()
        self._answering: dict[str, asyncio.Future[Any]] = {}
        self._writes: set[asyncio.Task[bool]] = set()
        info = engine.info
        metrics.EXPERT_INFO.labels(name, info.model, info.engine, info.revision).set(1)
        self._in_flight_gauge = metrics.EXPERT_IN_FLIGHT.labels(name)
        self._waiting_gauge = metrics.EXPERT_WAITING.labels(name)
        self._in_flight_gauge.set(0)
        self._waiting_gauge.set(0)
        self._tokens = (
            metrics.EXPERT_PROMPT_TOKENS.labels(name, info.model),
            metrics.EXPERT_COMPLETION_TOKENS.labels(name, info.model),
        )
        self._children: dict[tuple[str, ...], Any] = {}  # the labelled series of each call, looked up once

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.name, *labels)
        return child

    def _render(self, messages: list[Message], assistant_prefix: str = "") -> tuple[str, tuple[str, ...]]:
        info = self.engine.info
        if not info.chat_template:
            return completion_prompt(messages, assistant_prefix), info.stop_strings
        prompt = render_chat_lenient(
            info.chat_template, messages, bos_token=info.bos_token, eos_token=info.eos_token, add_generation_prompt=True
        )
        return prompt + assistant_prefix, info.stop_strings

    async def _once(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        run: Callable[[], Awaitable[_Reply]],
        reply_type: type[_Reply],
    ) -> _Reply:
        """`_answer`, counted by outcome and timed (warrior_expert_requests_total, _request_seconds)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._answer(method, context, run, reply_type)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException:
            code = context.code()
            outcome = code.name.lower() if isinstance(code, grpc.StatusCode) else "unknown"
            raise
        finally:
            self._child(metrics.EXPERT_REQUESTS, method, outcome).inc()
            self._child(metrics.EXPERT_REQUEST_SECONDS, method).observe(time.perf_counter() - started)

    def _cache_lookup(self, result: str) -> None:
        self._child(metrics.EXPERT_ANSWER_CACHE, result).inc()

    async def _answer(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        run: Callable[[], Awaitable[_Reply]],
        reply_type: type[_Reply],
    ) -> _Reply:
        """Serve `run()` once per caller ledger key (metadata CALL_KEY_HEADER); calls without one always run.

        A keyed call is answered from this process' memory, else from Redis (`shared`), else by the
        engine; an engine's answer is written to Redis before it is returned. A call already being
        answered here waits for that answer.
        """
        call_key = dict(context.invocation_metadata() or ()).get(CALL_KEY_HEADER)
        if not call_key:
            return cast(_Reply, await self._guard(context, run()))
        key = f"{method}:{call_key}"
        if key in self._answered:
            self._answered.move_to_end(key)
            self._cache_lookup("memory")
            return cast(_Reply, self._answered[key])
        pending = self._answering.get(key)
        if pending is not None:
            self._cache_lookup("joined")
            return cast(_Reply, await asyncio.shield(pending))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answering[key] = future
        reply: _Reply | None = None
        try:
            reply = await self._recall(method, call_key, reply_type)
            self._cache_lookup("shared" if reply is not None else "miss")
            if reply is None:
                reply = cast(_Reply, await self._guard(context, run()))
                self._remember(key, reply)
                await self._share(method, call_key, reply)
        except BaseException as exc:
            if reply is not None:  # answered, then cancelled while writing it: those waiting get the answer
                future.set_result(reply)
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: a failure is not cached, the next caller runs it again
            raise
        finally:
            self._answering.pop(key, None)
        future.set_result(reply)
        self._remember(key, reply)
        return reply

    def _remember(self, key: str, reply: Any) -> None:
        self._answered[key] = reply
        self._answered.move_to_end(key)
        while len(self._answered) > ANSWER_CACHE:
            self._answered.popitem(last=False)

    async def _recall(self, method: str, call_key: str, reply_type: type[_Reply]) -> _Reply | None:
        """The answer another replica (or an earlier life of this one) gave, from Redis; None on any miss."""
        if self.shared is None or not self.shared.accepts(call_key):
            return None
        payload = await self.shared.get(method, call_key)
        if payload is None:
            return None
        try:
            reply = reply_type.FromString(payload)
        except DecodeError as exc:
            log.warning(
                "answer cache: the stored %s answer for %s does not parse (%s); answering anew", method, call_key, exc
            )
            return None
        log.info("answer cache: %s for %s answered from Redis, without the engine", method, call_key)
        field = "revision"  # an answer stored before answers named it: the cache is keyed by this revision
        if field in reply.DESCRIPTOR.fields_by_name and not getattr(reply, field):
            setattr(reply, field, self.engine.info.revision)
        return reply

    async def _share(self, method: str, call_key: str, reply: ProtoMessage) -> None:
        """Write an answer to Redis; a cancelled call does not cancel the write (its repeat will want it)."""
        if self.shared is None or not self.shared.accepts(call_key):
            return
        write = asyncio.ensure_future(self.shared.put(method, call_key, reply.SerializeToString()))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        await asyncio.shield(write)

    def _load_changed(self) -> None:
        self._in_flight_gauge.set(self.in_flight)
        self._waiting_gauge.set(max(0, self.in_flight - self.engine.info.capacity))

    async def _guard(self, context: grpc.aio.ServicerContext, coro):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self._load_changed()
        try:
            reply = await coro
        except (_Invalid, EngineRequestError, TemplateError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except EngineBusy as exc:
            metrics.EXPERT_REFUSALS.labels(self.name, "resource_exhausted").inc()
            metrics.EXPERT_RETRY_AFTER_SECONDS.labels(self.name).observe(RETRY_AFTER_MS / 1000)
            context.set_trailing_metadata((("retry-after-ms", str(RETRY_AFTER_MS)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except EngineUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        else:
            usage = getattr(reply, "usage", None)
            if usage is not None:
                self._tokens[0].inc(usage.prompt_tokens)
                self._tokens[1].inc(usage.completion_tokens)
            return reply
        finally:
            self.in_flight -= 1
            self._load_changed()

    async def Complete(self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext) -> pb.CompleteResponse:
        async def run() -> pb.CompleteResponse:
            if not request.prompt:
                raise _Invalid("prompt is empty")
            if len(request.prompt) > MAX_PROMPT_CHARS:
                raise _Invalid(f"prompt of {len(request.prompt)} characters exceeds {MAX_PROMPT_CHARS}")
            out = await self.engine.generate(request.prompt, _sampling(request.sampling, 256))
            return pb.CompleteResponse(
                text=out.text,
                finish_reason=out.finish_reason,
                usage=pb.Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens),
                revision=self.engine.info.revision,
            )

        return await self._once("Complete", context, run, pb.CompleteResponse)

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        async def run() -> pb.ChatResponse:
            messages = _messages(request.messages)
            sampling = _sampling(request.sampling, 512)
            if self.engine.info.native_chat:
                chat = [{"role": m.role, "content": m.content} for m in messages]
                out = await cast(NativeChatEngine, self.engine).chat(chat, sampling)
            else:
                prompt, stops = self._render(messages)
                sampling = SamplingSpec(
                    sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.stop + stops, sampling.seed
                )
                out = await self.engine.generate(prompt, sampling)
            return pb.ChatResponse(
                text=out.text.strip(),
                finish_reason=out.finish_reason,
                usage=pb.Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens),
                revision=self.engine.info.revision,
            )

        return await self._once("Chat", context, run, pb.ChatResponse)

    async def ScoreCandidates(
        self, request: pb.ScoreCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreCandidatesResponse:
        async def run() -> pb.ScoreCandidatesResponse:
            candidates = list(request.candidates)
            if not candidates:
                raise _Invalid("candidates is empty")
            if len(candidates) > MAX_CANDIDATES:
                raise _Invalid(f"{len(candidates)} candidates (at most {MAX_CANDIDATES})")
            if any(not c for c in candidates):
                raise _Invalid("a candidate is empty")
            size = sum(len(m.content) for m in request.messages) + len(request.assistant_prefix)
            size += sum(len(c) for c in candidates)
            if size > MAX_PROMPT_CHARS:
                raise _Invalid(f"messages, prefix and candidates total {size} characters, more than {MAX_PROMPT_CHARS}")
            prompt, _ = self._render(_messages(request.messages), request.assistant_prefix)
            scores = await self.engine.score(prompt, candidates)
            return pb.ScoreCandidatesResponse(
                scores=[
                    pb.CandidateScore(candidate=c, logprob=lp, tokens=n)
                    for c, (lp, n) in zip(candidates, scores, strict=True)
                ],
                revision=self.engine.info.revision,
            )

        return await self._once("ScoreCandidates", context, run, pb.ScoreCandidatesResponse)

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        info = self.engine.info
        return pb.GetModelInfoResponse(
            name=self.name,
            model=info.model,
            revision=info.revision,
            engine=info.engine,
            chat_template=info.chat_template,
            bos_token=info.bos_token,
            eos_token=info.eos_token,
            stop_strings=list(info.stop_strings),
            context_length=info.context_length,
            capacity=info.capacity,
            capabilities=pb.Capabilities(**info.capabilities),
            prequery_prefix=self.prequery_prefix,
        )


def check_prequery(engine: Engine) -> str:
    """The pre-query prefix of the engine's chat template; a template that cannot yield one stops the server.

    Mining needs the prefix, so a model whose template does not place the user's text verbatim
    is refused at start-up with a way out, rather than failing every mining call later.
    """
    info = engine.info
    if not info.chat_template:
        return ""
    try:
        return prequery_prefix(info.chat_template, None, bos_token=info.bos_token, eos_token=info.eos_token)
    except TemplateError as exc:
        raise SystemExit(
            f"error: the chat template of {info.model} cannot yield a pre-query prefix ({exc}); "
            "serve it with --chat-template none to use completion-style prompts"
        ) from None


def build_engine(args: argparse.Namespace) -> Engine:
    if args.engine == "zero-latency-test":
        from warrior.expert_inference.zero_latency_engine import ZeroLatencyTestEngine

        return ZeroLatencyTestEngine(args.name, capacity=max(args.parallel, 1))
    if args.engine == "openai":
        from warrior.expert_inference.openai_engine import OpenAICompatibleEngine

        if not args.openai_base_url:
            raise SystemExit("error: --openai-base-url is required for the openai engine")
        template = ""
        if args.chat_template_file:
            with open(args.chat_template_file, encoding="utf-8") as handle:
                template = handle.read()
        try:
            return OpenAICompatibleEngine(
                args.openai_base_url,
                model=args.openai_model,
                api_key=os.environ.get(args.openai_api_key_env) or None,
                chat_template=template,
                capacity=args.parallel,
            )
        except (EngineRequestError, EngineUnavailable) as exc:
            raise SystemExit(f"error: {exc}") from None
    if not args.model:
        raise SystemExit(f"error: --model is required for the {args.engine} engine")
    if args.engine == "vllm":
        from warrior.expert_inference.vllm_engine import VllmEngine

        return VllmEngine(
            args.model,
            max_waiting=args.max_waiting,
            capacity=args.parallel,
            context_length=args.context_length,
            use_chat_template=args.chat_template == "auto",
            dtype=args.dtype,
            gpu_memory_utilization=args.gpu_memory_utilization,
        )
    from warrior.expert_inference.llamacpp_engine import LlamaCppEngine

    return LlamaCppEngine(
        args.model,
        parallel=args.parallel,
        context_length=args.context_length,
        threads=args.threads,
        use_chat_template=args.chat_template == "auto",
        max_waiting=args.max_waiting,
    )


def _address(host: str, port: int) -> str:
    """host:port, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def load_security() -> ServerSecurity:
    """The server's TLS and token settings; a bad setting stops the server before any model loads."""
    try:
        return ServerSecurity.from_env()
    except SecurityConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


async def serve(args: argparse.Namespace) -> None:
    started = time.monotonic()
    security = load_security()
    # Redis serves the registry (unless --no-register) and the shared answers (unless their TTL is 0).
    settings = Settings.from_env() if not args.no_register or args.answer_cache_ttl_s else None
    engine = build_engine(args)
    shared: SharedAnswers | None = None
    if settings is not None and args.answer_cache_ttl_s:
        shared = SharedAnswers(
            connect_async(settings.redis_url, timeout_s=TIMEOUT_S),
            expert=args.name,
            revision=engine.info.revision,
            ttl_s=args.answer_cache_ttl_s,
        )
    servicer = ExpertInferenceServicer(args.name, engine, shared)
    server = grpc.aio.server(
        interceptors=security.interceptors(),
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    pb_grpc.add_ExpertInferenceServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    credentials = security.credentials()
    address = _address(args.host, args.port)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    # Probes that speak neither TLS nor tokens get health checks alone, in plain text, on a port of their own.
    health_server: grpc.aio.Server | None = None
    if args.health_port is not None:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_server.add_insecure_port(_address(args.health_host or args.host, args.health_port))
        await health_server.start()
    await server.start()
    metrics.serve(args.metrics_port)
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    endpoint = _address(args.advertise_host, port)
    log.info(
        "expert %s (%s, %s) serving on %s (%s) after %.1fs%s",
        args.name,
        engine.info.model,
        engine.info.engine,
        endpoint,
        security.describe(),
        time.monotonic() - started,
        f"; plain-text health checks on port {args.health_port}" if health_server is not None else "",
    )
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(endpoint)
        os.replace(tmp, args.port_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    registry: Registry | None = None
    record: ExpertRecord | None = None
    heartbeat: asyncio.Task[None] | None = None
    if not args.no_register:
        assert settings is not None
        registry = Registry(connect(settings.redis_url), ttl_s=settings.registry_ttl_s)
        info = engine.info
        record = ExpertRecord(
            name=args.name,
            instance=uuid.uuid4().hex[:12],
            endpoint=endpoint,
            tls=security.tls,
            model=info.model,
            revision=info.revision,
            engine=info.engine,
            capacity=info.capacity,
            capabilities=info.capabilities,
            labels=args.labels,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=time.time(),
        )
        registry.register(record)
        heartbeat = asyncio.create_task(_heartbeat(registry, record, servicer, stop))

    await stop.wait()
    log.info("expert %s draining (%d in flight)", args.name, servicer.in_flight)
    if heartbeat is not None:
        heartbeat.cancel()
    await health_servicer.enter_graceful_shutdown()
    if registry is not None and record is not None:
        try:
            # Announce draining first: clients stop routing here while the requests in flight finish.
            registry.register(record.model_copy(update={"state": "draining", "in_flight": servicer.in_flight}))
            deadline = time.monotonic() + args.drain_s
            while servicer.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            registry.deregister(record.name, record.instance)
        except (OSError, RedisError) as exc:  # Redis may already be gone; the TTL then cleans up
            log.warning("could not deregister: %s", exc)
    await server.stop(grace=5)
    if health_server is not None:
        await health_server.stop(grace=None)
    if shared is not None:
        await shared.close()
    engine.close()
    log.info("expert %s stopped", args.name)


async def _heartbeat(
    registry: Registry, record: ExpertRecord, servicer: ExpertInferenceServicer, stop: asyncio.Event
) -> None:
    interval = max(registry.ttl_s / 3, 0.5)
    while not stop.is_set():
        await asyncio.sleep(interval)
        try:
            current = record.model_copy(update={"in_flight": servicer.in_flight})
            await asyncio.to_thread(registry.register, current)
        except (OSError, RedisError) as exc:  # keep serving; a missed beat only risks expiry
            log.warning("heartbeat failed: %s", exc)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="warrior-expert",
        description="Serve one expert model over gRPC (warrior.v1.ExpertInferenceService) and register it "
        "in the arena's registry (Redis from REDIS_URL) until stopped.",
    )
    parser.add_argument("--name", required=True, help="the expert's name in the arena (replicas share it)")
    parser.add_argument(
        "--engine",
        choices=["llamacpp", "vllm", "openai", "zero-latency-test"],
        default="llamacpp",
        help="llamacpp: a GGUF file on CPU; vllm: a Hugging Face model folder on vLLM in process (GPU, or the "
        "CPU build); openai: an OpenAI-compatible server (vllm serve, SGLang, TGI, llama.cpp's server); "
        "zero-latency-test: instant fake outputs for tests",
    )
    parser.add_argument("--dtype", default="auto", help="weights dtype for vllm (default auto)")
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=0.85, help="share of GPU memory vllm may take (default 0.85)"
    )
    parser.add_argument("--openai-base-url", help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000 (openai)")
    parser.add_argument("--openai-model", help="the served model id to use (openai; default: the first listed)")
    parser.add_argument(
        "--openai-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the server's API key, if it needs one (openai; default OPENAI_API_KEY)",
    )
    parser.add_argument(
        "--chat-template-file",
        help="the served model's Jinja chat template (openai): enables pre-query mining and candidate scoring",
    )
    parser.add_argument("--model", help="the GGUF model file (llamacpp) or model folder (vllm)")
    parser.add_argument(
        "--chat-template",
        choices=["auto", "none"],
        default="auto",
        help="auto: the model's own template; none: completion-style prompts (base models)",
    )
    parser.add_argument("--parallel", type=int, default=2, help="requests served at once (default 2)")
    parser.add_argument("--context-length", type=int, default=2048, help="tokens per sequence (default 2048)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per sequence (0: all cores)")
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=None,
        help="requests allowed to wait for a free sequence before answering RESOURCE_EXHAUSTED (llamacpp; "
        "default 16 x --parallel)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--advertise-host",
        default=os.environ.get("POD_IP", "127.0.0.1"),
        help="host others reach this server at (default $POD_IP or 127.0.0.1)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="also serve grpc.health.v1 alone on this port, in plain text and without a token, for probes that "
        "speak neither (Kubernetes gRPC probes) while TLS or a token guards the main port",
    )
    parser.add_argument("--health-host", help="address of the health port (default: --host)")
    parser.add_argument("--port-file", help="write host:port here once serving")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=metrics.port_from_env(),
        help="serve Prometheus metrics (requests, tokens, latency, load) over HTTP on this port at /metrics "
        f"(default ${metrics.PORT_ENV}; 0: off); the address is ${metrics.HOST_ENV} or 0.0.0.0",
    )
    parser.add_argument("--no-register", action="store_true", help="serve without registering in Redis")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of this replica in the registry (repeatable; added to $WARRIOR_EXPERT_LABELS, e.g. "
        "'role=eval,pool=paper'): a campaign with an open roster takes in only experts matching its "
        "matchmaking.roster_selector, and never one labelled role=eval",
    )
    parser.add_argument(
        "--drain-s", type=float, default=10.0, help="on SIGTERM, seconds to let requests in flight finish (default 10)"
    )
    parser.add_argument(
        "--answer-cache-ttl-s",
        type=int,
        default=os.environ.get("WARRIOR_ANSWER_CACHE_TTL_S", str(DEFAULT_TTL_S)),
        help="seconds each answer to a call carrying a ledger key stays in Redis, shared by every replica of "
        "this expert, so a repeat after this process dies is answered without running the engine again; "
        "0: this process' memory only (default $WARRIOR_ANSWER_CACHE_TTL_S or 86400). Without Redis the "
        "server answers from memory alone",
    )
    args = parser.parse_args(argv)
    try:
        args.labels = parse_labels(os.environ.get("WARRIOR_EXPERT_LABELS", "")) | parse_labels(",".join(args.label))
    except ValueError as exc:
        parser.error(str(exc))
    if args.parallel < 1:
        parser.error(f"--parallel={args.parallel} must be at least 1")
    if args.health_port is not None and not 1 <= args.health_port <= 65535:
        parser.error(f"--health-port={args.health_port} must be a port number (1-65535)")
    if args.health_port is not None and args.health_port == args.port:
        parser.error("--health-port must differ from --port")
    if args.answer_cache_ttl_s < 0:
        parser.error(f"--answer-cache-ttl-s={args.answer_cache_ttl_s} must be at least 0 (0: memory only)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging("expert")
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
